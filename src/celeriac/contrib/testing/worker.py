"""``start_worker``: a real worker in a thread of the test process, for the length of a block.

It consumes the app's real broker (``memory://``, SQLite or Redis) with the ``solo`` or
``threads`` pool, so a test can ``add.delay(2, 2).get(timeout=10)`` and get ``4``. When the
block ends, the worker stops as after SIGTERM: the running task finishes, the rest stays
queued.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ...errors import ImproperlyConfigured
from ...worker.worker import Worker

if TYPE_CHECKING:
    from ...app import Celeriac

PING_TASK = "celery.ping"
WORKER_LOGLEVEL = "error"  # Celery's: a test run shows the worker's errors, not its chatter
IN_THREAD_POOLS = ("solo", "threads")
READY_TIMEOUT_S = 60.0  # start-up includes importing the task modules and the broker ping


class TestWorker(Worker):
    """A Worker that reports when it is ready and leaves the process's signals alone
    (they belong to the test runner's main thread)."""

    __test__ = False  # not a test class, whatever pytest's name rules say

    def __init__(self, app: Celeriac, **options: Any) -> None:
        super().__init__(app, banner=False, **options)
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def _install_signals(self) -> None:
        self.ready.set()  # called right before "ready.": the consumer starts next

    def run_in_thread(self) -> None:
        try:
            self.start()
        except BaseException as exc:  # handed to the test thread, which raises it
            self.error = exc
        finally:
            self.ready.set()

    def reload(self, modules: object = None, reload: bool = False) -> None:
        """Kept for Celery's docs, which call it after registering a task on a running
        session worker: here the worker finds tasks registered at any time."""

    def stop(self) -> None:
        """Warm shutdown: the running task finishes, what is not started stays queued."""
        self.runtime.stop.warm.set()


def ping() -> str:
    return "pong"


def ensure_ping_task(app: Celeriac) -> None:
    """Register Celery's ``celery.ping`` test task on *app* when it lacks one."""
    if PING_TASK not in app.tasks:
        app.task(name=PING_TASK)(ping)


@contextmanager
def start_worker(
    app: Celeriac,
    concurrency: int = 1,
    pool: str = "solo",
    loglevel: str | int = WORKER_LOGLEVEL,
    logfile: str | None = None,
    perform_ping_check: bool = True,
    ping_task_timeout: float = 10.0,
    shutdown_timeout: float = 10.0,
    **kwargs: Any,
) -> Iterator[TestWorker]:
    """Run a worker for *app* in a thread while the block runs; yields the worker.

    With ``perform_ping_check`` a ``celery.ping`` task makes the round trip through the
    broker and the result backend before the block starts, so a broken set-up fails here
    with its own error. Other keywords (``queues=``, ``hostname=``, ``prefetch_multiplier=``
    ...) go to the Worker. ``logfile`` is accepted for Celery's signature; log records go to
    the test runner's handlers.
    """
    if pool not in IN_THREAD_POOLS:
        raise ImproperlyConfigured(
            f"start_worker runs the worker in a thread of this process, so pool={pool!r} "
            f"cannot be used; give pool='solo' or pool='threads'"
        )
    if perform_ping_check:
        ensure_ping_task(app)
    kwargs.setdefault("hostname", f"gen{os.getpid()}@%h")
    worker = TestWorker(app, pool=pool, concurrency=concurrency, **kwargs)
    thread = threading.Thread(
        target=worker.run_in_thread, name=f"celeriac-test-worker-{pool}", daemon=True
    )
    with _worker_loglevel(loglevel):
        thread.start()
        try:
            if not worker.ready.wait(READY_TIMEOUT_S):
                raise RuntimeError(
                    f"the test worker was not ready after {READY_TIMEOUT_S:.0f} s; "
                    "run with -l debug (loglevel='debug') to see where it stopped"
                )
            if worker.error is not None:
                raise worker.error
            if perform_ping_check:
                answer = app.tasks[PING_TASK].delay().get(timeout=ping_task_timeout)
                if answer != "pong":
                    raise RuntimeError(f"the test worker answered ping with {answer!r}")
            yield worker
        finally:
            worker.stop()
            thread.join(shutdown_timeout)
        if thread.is_alive():
            raise RuntimeError(
                f"the test worker did not stop within shutdown_timeout={shutdown_timeout} s; "
                "a task is still running: give start_worker a larger shutdown_timeout"
            )
        if worker.error is not None:
            raise worker.error


@contextmanager
def _worker_loglevel(loglevel: str | int) -> Iterator[None]:
    """Celeriac's loggers at *loglevel* while the worker runs, as they were afterwards."""
    logger = logging.getLogger("celeriac")
    before = logger.level
    level = logging.getLevelName(loglevel.upper()) if isinstance(loglevel, str) else loglevel
    if not isinstance(level, int):
        raise ImproperlyConfigured(
            f"loglevel {loglevel!r} is not a logging level; give debug, info, warning or error"
        )
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)
