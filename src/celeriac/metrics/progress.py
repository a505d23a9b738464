"""The consume loop's pulse, shared by every process of a worker, for ``/readyz``.

One table made before the first fork (``enable``), four cells per consuming process: when
its loop last went round (or began a wait on the broker), whether it is running a task in
its own thread (solo, a prefork child), and whether its last broker call failed. Slot 0 is
the process that started the worker, slot i + 1 prefork child i. Cell 0 of the table holds
when the liveness heartbeat last reached the broker. Times are ``time.monotonic()``, which
is one clock for all processes of a machine.

Without ``--metrics-port`` no table exists: ``for_this_process()`` answers None and the
consumer pays one ``is None`` test per loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from multiprocessing.sharedctypes import RawArray
from typing import Any

_CELLS = 4  # beat_at, busy_since, failing_since, in use (1.0)
_MAX_SLOTS = 1024


class ProgressTable:
    def __init__(self, slots: int, within_s: float = 5.0, heartbeat_s: float = 1.0) -> None:
        self.slots = max(1, min(slots, _MAX_SLOTS))
        self.within_s = within_s  # what /readyz allows a loop (--metrics-ready-within)
        self.heartbeat_s = heartbeat_s
        self._cells: Any = RawArray("d", 1 + _CELLS * self.slots)

    def slot(self, child_index: int | None) -> Pulse:
        index = 0 if child_index is None else min(child_index + 1, self.slots - 1)
        return Pulse(self._cells, 1 + _CELLS * index)

    def broker_ok(self) -> None:
        self._cells[0] = time.monotonic()

    def read(self) -> Reading:
        cells = self._cells
        loops = []
        for index in range(self.slots):
            base = 1 + _CELLS * index
            if cells[base + 3]:
                loops.append(
                    LoopState(index - 1 if index else None, *(cells[base + i] for i in range(3)))
                )
        return Reading(broker_ok_at=cells[0], loops=loops)


class Pulse:
    """One consuming process's cells: written by its consumer loop, a store each."""

    __slots__ = ("_base", "_cells")

    def __init__(self, cells: Any, base: int) -> None:
        self._cells = cells
        self._base = base
        for i in range(_CELLS):
            cells[base + i] = 0.0
        cells[base] = time.monotonic()
        cells[base + 3] = 1.0

    def beat(self) -> None:
        """The loop went round: about to start a task, wait for a slot or ask the broker."""
        self._cells[self._base] = time.monotonic()

    def busy(self, running: bool) -> None:
        """A task runs in the loop's own thread (the loop cannot go round meanwhile)."""
        self._cells[self._base + 1] = time.monotonic() if running else 0.0

    def failing(self, failed: bool) -> None:
        """The last broker call failed (True) or one succeeded again (False)."""
        cells = self._cells
        if failed and not cells[self._base + 2]:
            cells[self._base + 2] = time.monotonic()
        elif not failed:
            cells[self._base + 2] = 0.0

    def leave(self) -> None:
        """The loop has stopped for good (shutdown, a child recycled)."""
        self._cells[self._base + 3] = 0.0


@dataclass(frozen=True)
class LoopState:
    child_index: int | None
    beat_at: float
    busy_since: float
    failing_since: float

    def age(self, now: float) -> float:
        """Seconds since the loop last showed progress (0 while it runs a task)."""
        if self.busy_since:
            return 0.0
        return max(0.0, now - self.beat_at)


@dataclass(frozen=True)
class Reading:
    broker_ok_at: float
    loops: list[LoopState]


_table: ProgressTable | None = None


def enable(slots: int, within_s: float = 5.0, heartbeat_s: float = 1.0) -> ProgressTable:
    """Make the table (before any fork); consumers made from now on keep a pulse."""
    global _table
    _table = ProgressTable(slots, within_s, heartbeat_s)
    return _table


def disable() -> None:
    global _table
    _table = None


def table() -> ProgressTable | None:
    return _table


def for_this_process(child_index: int | None) -> Pulse | None:
    """This consumer's pulse, or None when no one reads it (no ``--metrics-port``)."""
    if _table is None:
        return None
    return _table.slot(child_index)


def broker_ok() -> None:
    """The liveness heartbeat reached the broker (called by ``worker.liveness``)."""
    if _table is not None:
        _table.broker_ok()


def _register_readiness_command() -> None:
    """``readiness`` (an inspect command every worker answers): what ``/readyz`` says, for
    ``celeriac status --exit-code`` and ``celeriac inspect readiness``."""
    from ..worker.control_commands import inspect_command

    @inspect_command(name="readiness", help="Is the consume loop going round (as /readyz)?")
    def readiness(state: Any) -> dict[str, Any]:
        from .health import check

        if _table is None:
            return {"ready": None, "reasons": ["started without --metrics-port: not measured"]}
        answer = check(_table, _table.within_s, _table.heartbeat_s)
        return {"ready": answer.ready, "reasons": answer.reasons}


_register_readiness_command()
