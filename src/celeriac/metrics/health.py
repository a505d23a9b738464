"""``/readyz``: is the broker reachable and is every consume loop going round?

Ready when the liveness heartbeat reached the broker lately, and every consuming process
(the worker's own, or each prefork child) went round its loop within ``within_s`` seconds,
or is running a task in that loop's thread, and its last broker call did not fail. A loop
blocked in a broker call (Redis frozen by SIGSTOP, a network that drops packets) stops
going round, so it turns not ready after ``within_s`` and ready again once it moves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .progress import ProgressTable

DEFAULT_WITHIN_S = 5.0


@dataclass
class Readiness:
    ready: bool
    reasons: list[str] = field(default_factory=list)
    loop_ages: dict[str, float] = field(default_factory=dict)  # child ("" if none) -> s

    def text(self) -> str:
        if self.ready:
            return "ready\n"
        return "not ready: " + "; ".join(self.reasons) + "\n"


def check(
    table: ProgressTable,
    within_s: float = DEFAULT_WITHIN_S,
    heartbeat_interval_s: float = 1.0,
    now: float | None = None,
) -> Readiness:
    now = time.monotonic() if now is None else now
    reading = table.read()
    reasons: list[str] = []
    broker_window_s = max(within_s, 3.0 * heartbeat_interval_s)
    if not reading.broker_ok_at:
        reasons.append("the broker has not answered a heartbeat yet")
    elif now - reading.broker_ok_at > broker_window_s:
        reasons.append(f"no heartbeat reached the broker for {now - reading.broker_ok_at:.1f} s")
    if not reading.loops:
        reasons.append("no consume loop is running yet")
    ages: dict[str, float] = {}
    for loop in reading.loops:
        where = "consumer" if loop.child_index is None else f"child {loop.child_index}"
        age = loop.age(now)
        ages["" if loop.child_index is None else str(loop.child_index)] = age
        if loop.failing_since:
            reasons.append(f"{where}: broker calls failing for {now - loop.failing_since:.1f} s")
        elif age > within_s:
            reasons.append(f"{where}: consume loop stuck for {age:.1f} s")
    return Readiness(not reasons, reasons, ages)
