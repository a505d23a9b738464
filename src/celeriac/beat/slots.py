"""Slots: the instants at which an entry is due, which of them to send, and their task ids.

A slot is a UTC instant, kept as epoch seconds. Every beat computes the same slots from the
same stored last slot, and the task id of a slot is a UUID derived from the entry's name and
the slot, so every copy of one slot carries one id.

Daylight saving (crontab): crontab times are wall-clock times in the app's ``timezone``. On
the day clocks go forward, a time that does not exist runs at the old offset, i.e. one hour
later by the new clock (London 01:30 runs at 02:30 BST). On the day clocks go back, a time
that happens twice runs at its first occurrence only. Either way it runs exactly once.
"""

from __future__ import annotations

import math
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone

from ..errors import InvalidSchedule
from ..schedules import BaseSchedule, schedule

CATCH_UP_POLICIES = ("once", "none", "all")
MAX_SLOTS_PER_TICK = 1000  # "all" sends a longer backlog over several ticks
MAX_STEPS_PER_TICK = 100_000  # slots looked at in one tick; a longer outage takes more ticks
_NAMESPACE = uuid.UUID("6c1c39a4-64f4-4a8e-9c53-8f0a3a5b1e21")
_MAX_STEPS = 2000  # next_run_after calls to get past a repeated (fall-back) hour


def slot_task_id(entry_name: str, slot_s: float) -> str:
    """The task id of *entry_name*'s run at *slot_s*: the same in every beat process."""
    return str(uuid.uuid5(_NAMESPACE, f"{entry_name}\n{format_slot(slot_s)}"))


def format_slot(slot_s: float) -> str:
    """How a slot is written in the broker (and compared there): fixed, to the microsecond."""
    return f"{slot_s:.6f}"


def as_datetime(slot_s: float) -> datetime:
    return datetime.fromtimestamp(slot_s, timezone.utc)


def next_slot(value: BaseSchedule, after_s: float) -> float:
    """The first slot strictly after *after_s*.

    A crontab asked from inside a repeated (fall-back) hour answers with the first pass of
    that hour, which is earlier; stepping on skips the times that already ran once.
    """
    after = as_datetime(after_s)
    due = value.next_run_after(after)
    for _ in range(_MAX_STEPS):
        if due > after:
            return due.timestamp()
        due = value.next_run_after(due)
    raise InvalidSchedule(f"{value!r} gives no time after {after.isoformat()}; check it")


def first_anchor(value: BaseSchedule, now_s: float) -> float:
    """Where a new entry's slots start: an interval on its grid from the epoch, so beats
    started at different moments agree on the slots; any other schedule at *now_s*."""
    if isinstance(value, schedule) and not value.relative:
        step = value.run_every.total_seconds()
        if step >= 0.001:
            return math.floor(now_s / step) * step
    return now_s


def due_slots(
    value: BaseSchedule, last_s: float, now_s: float, *, oldest_first: bool
) -> tuple[list[float], float, bool]:
    """(slots after *last_s* due by *now_s*, in order; the slot after them; whether more due
    slots are left for the next tick).

    At most MAX_SLOTS_PER_TICK are returned: the oldest with *oldest_first* (catch-up "all"
    sends them in order, tick by tick), else the newest (the older ones are only skipped).
    """
    if not oldest_first and isinstance(value, schedule) and not value.relative:
        step = value.run_every.total_seconds()
        missed = math.floor((now_s - last_s) / step) if now_s > last_s else 0
        if missed > MAX_SLOTS_PER_TICK:  # jump over slots that would only be skipped
            last_s += (missed - MAX_SLOTS_PER_TICK) * step
    kept: deque[float] = deque(maxlen=None if oldest_first else MAX_SLOTS_PER_TICK)
    slot = next_slot(value, last_s)
    for _ in range(MAX_STEPS_PER_TICK):
        if slot > now_s:
            return list(kept), slot, False
        if oldest_first and len(kept) >= MAX_SLOTS_PER_TICK:
            break
        kept.append(slot)
        slot = next_slot(value, slot)
    return list(kept), slot, True


@dataclass(frozen=True)
class Plan:
    send: list[float]  # slots to send, oldest first
    last_s: float | None  # the last slot to record at the end (sent or skipped)


def plan(due: list[float], now_s: float, policy: str, late_after_s: float, skip_all: bool) -> Plan:
    """Which due slots to send.

    A slot due more than *late_after_s* ago was missed (no beat was running then). ``all``
    sends missed slots too; ``once`` sends only the newest missed one; ``none`` sends none of
    them. Slots due more recently are sent under every policy. With *skip_all* (a paused
    entry) none is sent.
    """
    if not due:
        return Plan([], None)
    if skip_all:
        return Plan([], due[-1])
    missed = [slot for slot in due if now_s - slot > late_after_s]
    recent = due[len(missed) :]
    if policy == "all":
        chosen = due
    elif policy == "once":
        chosen = missed[-1:] + recent
    else:
        chosen = recent
    return Plan(chosen, due[-1])


def check_policy(value: object) -> str:
    if value not in CATCH_UP_POLICIES:
        raise InvalidSchedule(
            f"beat_catch_up={value!r} is not a policy; use 'once' (a missed entry runs once), "
            f"'none' (missed slots are skipped) or 'all' (every missed slot runs)"
        )
    return str(value)
