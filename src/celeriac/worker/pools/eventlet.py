"""The eventlet pool: tasks run in up to N green threads in the main thread, cooperatively.

As with gevent, a green thread gives way only where eventlet can switch, which for redis-py
and ordinary libraries needs ``eventlet.monkey_patch()`` before anything imports ``socket``:
``celeriac worker -P eventlet`` does that; a program that starts a Worker itself must do it
first, and this module warns when it did not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...errors import ConfigurationError
from ..place import Place, greenlet_id
from ..serve import serve_in_process
from ..timelimits import Watchdog, eventlet_interrupter

if TYPE_CHECKING:
    from ..runtime import WorkerRuntime

logger = logging.getLogger(__name__)


def require_eventlet() -> Any:
    """The ``eventlet`` package, or a ConfigurationError that says how to install it."""
    try:
        import eventlet
        import eventlet.patcher
    except ImportError as exc:
        raise ConfigurationError(
            f"the eventlet pool needs eventlet, which is not importable ({exc}): "
            f"pip install 'celeriac[eventlet]'"
        ) from exc
    return eventlet


def warn_unless_patched(eventlet: Any) -> bool:
    """Log why the pool would not be concurrent when ``socket`` is not patched; True if it is."""
    if eventlet.patcher.is_monkey_patched("socket"):
        return True
    logger.warning(
        "the eventlet pool is running without eventlet's monkey-patching: Redis I/O and "
        "time.sleep block every green thread, so tasks run one at a time. Start the worker "
        "with `celeriac worker -P eventlet`, or call eventlet.monkey_patch() before importing "
        "anything else in your program"
    )
    return False


def _run_logged(job: Callable[[], None]) -> None:
    try:
        job()
    except Exception:  # the consumer's handler logs per task; this is a last resort
        logger.exception("job %r raised in a green thread", job)


class GreenThreadSlots:
    """An ``eventlet.GreenPool`` of N green threads; ``spawn_n`` takes its slot at once, so
    ``free()`` is exact."""

    def __init__(self, capacity: int) -> None:
        self._eventlet = require_eventlet()
        self.capacity = capacity
        self._pool = self._eventlet.GreenPool(capacity)

    def free(self) -> int:
        return int(self._pool.free())

    def submit(self, job: Callable[[], None]) -> None:
        self._pool.spawn_n(_run_logged, job)

    def wait_for_free(self, timeout_s: float) -> None:
        if self._pool.sem.acquire(timeout=timeout_s):
            self._pool.sem.release()

    def join(self, timeout_s: float | None) -> bool:
        with self._eventlet.Timeout(timeout_s, False):
            self._pool.waitall()
        return int(self._pool.running()) == 0

    def place_extras(self) -> Place:
        return {"greenlet": greenlet_id()}


class EventletPool:
    name = "eventlet"

    def __init__(self, runtime: WorkerRuntime) -> None:
        self.runtime = runtime
        warn_unless_patched(require_eventlet())
        self.watchdog = Watchdog(runtime, eventlet_interrupter())  # time limits, terminate

    def terminate_task(self, task_id: str, signum: int) -> bool:
        return self.watchdog.terminate(task_id, signum)

    def running_ids(self) -> set[str]:
        return self.watchdog.running_ids()

    def run(self) -> int:
        slots = GreenThreadSlots(self.runtime.concurrency)
        try:
            return serve_in_process(self.runtime, slots, self.name, handler=self.watchdog.handle)
        finally:
            self.watchdog.served()
