"""What a running worker knows: its app, name, queues, limits and shutdown flags."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..app import Celeriac
    from .consumed_queues import ConsumedQueues


class ColdShutdown(BaseException):
    """Raised in the main thread to stop the running task now (SIGQUIT, second Ctrl-C)."""


class Flag:
    """A one-way switch that signal handlers may flip.

    threading.Event is not safe here: a second signal that arrives while the handler of the
    first is inside Event.set() re-enters its lock and deadlocks the process. A plain
    attribute write cannot; waiters poll it in short steps.
    """

    __slots__ = ("_on",)

    def __init__(self) -> None:
        self._on = False

    def set(self) -> None:
        self._on = True

    def is_set(self) -> bool:
        return self._on

    def wait(self, timeout_s: float | None = None) -> bool:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self._on:
            remaining = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if remaining <= 0:
                break
            time.sleep(remaining)
        return self._on


@dataclass
class StopFlags:
    warm: Flag = field(default_factory=Flag)
    cold: Flag = field(default_factory=Flag)

    @property
    def stopping(self) -> bool:
        return self.warm.is_set() or self.cold.is_set()


@dataclass
class WorkerRuntime:
    app: Celeriac
    nodename: str
    pool_name: str
    concurrency: int
    queues: list[str]
    stop: StopFlags = field(default_factory=StopFlags)
    max_tasks_per_child: int | None = None
    max_memory_per_child_kib: int | None = None
    time_limit_s: float | None = None
    soft_time_limit_s: float | None = None
    prefetch_multiplier: int = 4
    prefetch_window_s: float = 0.0  # see prefetch.py
    warm_grace_s: float | None = None
    autoscale: tuple[int, int] | None = None  # (MAX, MIN) prefork children, see autoscale.py
    # the queues as add_consumer/cancel_consumer change them (shared with prefork children)
    consumed: ConsumedQueues | None = None
