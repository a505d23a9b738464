"""The solo pool: tasks run in the worker's main thread, one at a time."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ... import lifecycle
from ..place import Place
from ..serve import serve_in_process
from ..timelimits import SignalInterrupter, ThreadInterrupter, Watchdog

if TYPE_CHECKING:
    from ..runtime import WorkerRuntime

logger = logging.getLogger(__name__)


class InlineSlots:
    """One slot: the caller's own thread. ``submit`` runs the job before returning."""

    capacity = 1
    inline = True  # jobs run in the consumer's own thread

    def __init__(self) -> None:
        self._busy = False

    def free(self) -> int:
        return 0 if self._busy else 1

    def submit(self, job: Callable[[], None]) -> None:
        self._busy = True
        try:
            job()
        finally:
            self._busy = False

    def wait_for_free(self, timeout_s: float) -> None:
        return None

    def join(self, timeout_s: float | None) -> bool:
        return True

    def place_extras(self) -> Place:
        return {}


class SoloPool:
    name = "solo"

    def __init__(self, runtime: WorkerRuntime) -> None:
        self.runtime = runtime
        self.watchdog: Watchdog | None = None  # made in run(): its signal handler needs it

    def terminate_task(self, task_id: str, signum: int) -> bool:
        return self.watchdog is not None and self.watchdog.terminate(task_id, signum)

    @property
    def recycle_requested(self) -> bool:
        """A task stuck past its hard limit was abandoned: the worker execs afresh."""
        return bool(self.watchdog is not None and self.watchdog.recycling)

    def running_ids(self) -> set[str]:
        return self.watchdog.running_ids() if self.watchdog is not None else set()

    def run(self) -> int:
        # tasks run in this process: it is the one worker_process_init prepares (Celery's)
        if lifecycle.worker_process_started.hooks:
            lifecycle.worker_process_started.emit(self.runtime.nodename)
        # time limits, terminate; SIGALRM only reaches the main thread, so a solo worker run
        # in another thread (start_worker in a test) interrupts with an async exception
        in_main = threading.current_thread() is threading.main_thread()
        interrupter = SignalInterrupter() if in_main else ThreadInterrupter()
        self.watchdog = Watchdog(self.runtime, interrupter)
        self.watchdog.may_recycle = in_main  # see Watchdog.may_recycle
        try:
            return serve_in_process(
                self.runtime, InlineSlots(), self.name, handler=self.watchdog.handle
            )
        finally:
            self.watchdog.served()
