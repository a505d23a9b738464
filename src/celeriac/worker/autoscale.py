"""``--autoscale=MAX,MIN``: how many prefork children the load asks for.

The load is the children busy with a task plus the messages waiting in the worker's queues.
When it passes the children there are, the pool grows at once, up to MAX. When it has stayed
below them for ``AUTOSCALE_KEEPALIVE`` seconds (Celery's variable, 30 by default), the pool
shrinks to the load, down to MIN. The prefork manager asks once a second.
"""

from __future__ import annotations

import os

from ..errors import ConfigurationError

DEFAULT_KEEPALIVE_S = 30.0
CHECK_INTERVAL_S = 1.0


def parse_autoscale(value: str) -> tuple[int, int]:
    """``"10,3"`` -> (10, 3): Celery's MAX,MIN (either order; a lone number is MAX, MIN 0)."""
    parts = [p.strip() for p in value.split(",")]
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        numbers = []
    if not 1 <= len(numbers) <= 2 or any(n < 0 for n in numbers) or max(numbers) < 1:
        raise ConfigurationError(
            f"--autoscale {value!r} is not MAX,MIN; give two whole numbers, the most and the "
            "fewest child processes, e.g. --autoscale=10,3"
        )
    high = max(numbers)
    low = min(numbers) if len(numbers) == 2 else 0
    return high, low


def keepalive_s() -> float:
    raw = os.environ.get("AUTOSCALE_KEEPALIVE", "")
    try:
        value = float(raw) if raw else DEFAULT_KEEPALIVE_S
    except ValueError:
        value = -1.0
    if value < 0:
        raise ConfigurationError(
            f"AUTOSCALE_KEEPALIVE={raw!r} is not a number of seconds >= 0; unset it for 30"
        )
    return value


class Autoscaler:
    """Decides the number of children; the pool does the spawning and retiring."""

    def __init__(self, max_procs: int, min_procs: int, keepalive: float | None = None) -> None:
        self.max_procs = max_procs
        self.min_procs = min_procs
        self.keepalive_s = keepalive_s() if keepalive is None else keepalive
        self._last_full = 0.0  # monotonic time the load last needed every child

    def target(self, procs: int, busy: int, queued: int, now: float) -> int:
        """How many children to have, given *procs* now, *busy* of them running a task and
        *queued* messages waiting."""
        load = busy + queued
        if load >= procs:
            self._last_full = now
            return max(self.min_procs, min(self.max_procs, max(load, procs)))
        if now - self._last_full < self.keepalive_s:
            return max(self.min_procs, min(self.max_procs, procs))
        return max(self.min_procs, min(self.max_procs, load))
