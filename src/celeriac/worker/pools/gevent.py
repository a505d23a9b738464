"""The gevent pool: tasks run in up to N greenlets in the main thread, cooperatively.

A greenlet gives way only where gevent can switch: sockets, ``time.sleep``, locks. That holds
for redis-py and ordinary libraries only once the standard library is monkey-patched, which
``celeriac worker -P gevent`` does before anything imports ``socket``. A program that starts a
Worker itself must call ``gevent.monkey.patch_all()`` first; this module warns when it did not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...errors import ConfigurationError
from ..place import Place, greenlet_id
from ..serve import serve_in_process
from ..timelimits import Watchdog, gevent_interrupter

if TYPE_CHECKING:
    from ..runtime import WorkerRuntime

logger = logging.getLogger(__name__)


def require_gevent() -> Any:
    """The ``gevent`` package, or a ConfigurationError that says how to install it."""
    try:
        import gevent
        import gevent.monkey
        import gevent.pool
    except ImportError as exc:
        raise ConfigurationError(
            f"the gevent pool needs gevent, which is not importable ({exc}): "
            f"pip install 'celeriac[gevent]'"
        ) from exc
    return gevent


def warn_unless_patched(gevent: Any) -> bool:
    """Log why the pool would not be concurrent when ``socket`` is not patched; True if it is."""
    if gevent.monkey.is_module_patched("socket"):
        return True
    logger.warning(
        "the gevent pool is running without gevent's monkey-patching: Redis I/O and "
        "time.sleep block every greenlet, so tasks run one at a time. Start the worker with "
        "`celeriac worker -P gevent`, or call gevent.monkey.patch_all() before importing "
        "anything else in your program"
    )
    return False


def _run_logged(job: Callable[[], None]) -> None:
    try:
        job()
    except Exception:  # the consumer's handler logs per task; this is a last resort
        logger.exception("job %r raised in a greenlet", job)


class GreenletSlots:
    """A ``gevent.pool.Pool`` of N greenlets; ``spawn`` takes its slot at once, so
    ``free()`` is exact."""

    def __init__(self, capacity: int) -> None:
        gevent = require_gevent()
        self.capacity = capacity
        self._pool = gevent.pool.Pool(capacity)

    def free(self) -> int:
        return int(self._pool.free_count())

    def submit(self, job: Callable[[], None]) -> None:
        self._pool.spawn(_run_logged, job)

    def wait_for_free(self, timeout_s: float) -> None:
        self._pool.wait_available(timeout=timeout_s)

    def join(self, timeout_s: float | None) -> bool:
        return bool(self._pool.join(timeout=timeout_s))

    def place_extras(self) -> Place:
        return {"greenlet": greenlet_id()}


class GeventPool:
    name = "gevent"

    def __init__(self, runtime: WorkerRuntime) -> None:
        self.runtime = runtime
        warn_unless_patched(require_gevent())
        self.watchdog = Watchdog(runtime, gevent_interrupter())  # time limits, terminate

    def terminate_task(self, task_id: str, signum: int) -> bool:
        return self.watchdog.terminate(task_id, signum)

    def running_ids(self) -> set[str]:
        return self.watchdog.running_ids()

    def run(self) -> int:
        slots = GreenletSlots(self.runtime.concurrency)
        try:
            return serve_in_process(self.runtime, slots, self.name, handler=self.watchdog.handle)
        finally:
            self.watchdog.served()
