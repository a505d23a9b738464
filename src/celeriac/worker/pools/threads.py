"""The threads pool: tasks run in N threads of the worker's main process.

The consumer only fetches what a free thread can start now, so no message waits in this
process while it could be running elsewhere. The threads are daemons: a cold shutdown
exits under a running task instead of waiting for it (``ThreadPoolExecutor`` joins its
threads at interpreter exit, which would turn every cold stop into a warm one).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from ..place import Place
from ..serve import serve_in_process
from ..timelimits import ThreadInterrupter, Watchdog

if TYPE_CHECKING:
    from ..runtime import WorkerRuntime

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
_WorkItem = tuple["Future[Any]", Callable[[], Any]]


class DaemonThreadExecutor(Executor):
    """At most *max_workers* daemon threads, started on demand and reused while alive."""

    def __init__(self, max_workers: int, name: str) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        self.max_workers = max_workers
        self.name = name
        self._work: queue.SimpleQueue[_WorkItem | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._numbers = itertools.count(1)
        self._is_shut_down = False

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._is_shut_down:
                raise RuntimeError(f"executor {self.name!r} is shut down; no new work is taken")
            self._work.put((future, lambda: fn(*args, **kwargs)))
            self._start_thread_if_none_idle()
        return future

    def _start_thread_if_none_idle(self) -> None:
        if self._idle.acquire(timeout=0):
            return  # an idle thread will take the item
        if len(self._threads) < self.max_workers:
            thread = threading.Thread(
                target=self._work_loop, name=f"{self.name}-{next(self._numbers)}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _work_loop(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            future, call = item
            del item
            if future.set_running_or_notify_cancel():
                try:
                    result = call()
                except BaseException as exc:  # the caller reads it from the future
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del future, call
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._is_shut_down = True
            threads = list(self._threads)
        if cancel_futures:
            self._cancel_waiting()
        for _ in threads:
            self._work.put(None)
        if wait:
            for thread in threads:
                thread.join()

    def _cancel_waiting(self) -> None:
        while True:
            try:
                item = self._work.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item[0].cancel()


class ThreadSlots:
    """N threads; ``free()`` counts jobs submitted and not yet ended, so it is exact."""

    def __init__(self, capacity: int, name: str = "celeriac-thread") -> None:
        self.capacity = capacity
        self._executor = DaemonThreadExecutor(capacity, name)
        self._changed = threading.Condition()
        self._running = 0

    def free(self) -> int:
        with self._changed:
            return self.capacity - self._running

    def submit(self, job: Callable[[], None]) -> None:
        with self._changed:
            if self._running >= self.capacity:
                raise RuntimeError(
                    f"all {self.capacity} threads are busy; submit only when free() > 0"
                )
            self._running += 1
        self._executor.submit(self._run, job)

    def _run(self, job: Callable[[], None]) -> None:
        try:
            job()
        except Exception:  # the consumer's handler logs per task; this is a last resort
            logger.exception("job %r raised in a pool thread", job)
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()

    def abandon(self) -> None:
        """A job stuck past its hard time limit no longer counts as running (the process
        is recycled, see timelimits.py): a warm stop does not wait for it."""
        with self._changed:
            self._running -= 1
            self._changed.notify_all()

    def wait_for_free(self, timeout_s: float) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._running < self.capacity, timeout_s)

    def join(self, timeout_s: float | None) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._running == 0, timeout_s)

    def place_extras(self) -> Place:
        return {}

    def close(self) -> None:
        """Let idle threads end; running ones are daemons and do not hold up the exit."""
        self._executor.shutdown(wait=False)


class ThreadPool:
    name = "threads"

    def __init__(self, runtime: WorkerRuntime) -> None:
        self.runtime = runtime
        self.watchdog = Watchdog(runtime, ThreadInterrupter())  # time limits, terminate

    def terminate_task(self, task_id: str, signum: int) -> bool:
        return self.watchdog.terminate(task_id, signum)

    @property
    def recycle_requested(self) -> bool:
        """A task stuck past its hard limit was abandoned: the worker execs afresh."""
        return bool(self.watchdog.recycling)

    def running_ids(self) -> set[str]:
        return self.watchdog.running_ids()

    def run(self) -> int:
        slots = ThreadSlots(self.runtime.concurrency)
        self.watchdog.on_abandon = slots.abandon
        self.watchdog.may_recycle = threading.current_thread() is threading.main_thread()
        try:
            return serve_in_process(self.runtime, slots, self.name, handler=self.watchdog.handle)
        finally:
            slots.close()
            self.watchdog.served()
