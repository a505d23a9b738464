"""What a running worker knows: its app, name, queues, limits and shutdown flags."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..app import Celeriac


class ColdShutdown(BaseException):  # noqa: N818 - a control-flow signal, like SystemExit
    """Raised in the main thread to stop the running task now (SIGQUIT, second Ctrl-C)."""


@dataclass
class StopFlags:
    warm: threading.Event = field(default_factory=threading.Event)
    cold: threading.Event = field(default_factory=threading.Event)

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
    warm_grace_s: float | None = None
