"""Time limits and ``revoke(terminate=True)`` for the pools whose tasks share the worker's
process (solo, threads, gevent, eventlet). Prefork enforces them from its manager instead.

A watchdog thread (a greenlet once gevent or eventlet patched ``threading``) looks at the
running invocations every 50 ms. At the soft limit it raises SoftTimeLimitExceeded inside the
task; at the hard limit, TimeLimitExceeded; on ``terminate``, Terminated. How it raises
depends on where the task runs (see the ``*Interrupter`` classes): a signal for solo's main
thread, an asynchronous exception for a pool thread, a ``throw`` scheduled on the hub for a
greenlet.

The hard limit is a guaranteed stop. A task that still runs ``RECYCLE_GRACE_S`` after it was
told to stop (a thread blocked inside one C call cannot be interrupted) is abandoned: the
watchdog stores FAILURE TimeLimitExceeded (or REVOKED for terminate), acks the message, and
recycles the process: the consumer stops fetching, the other running tasks get
``RECYCLE_DRAIN_S`` to end, everything held but unstarted goes back to its queue, and the
worker execs itself afresh (same pid, same command line), which drops the stuck thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .. import states
from ..backends.base import build_meta, encode_exception
from ..brokers.base import Delivery
from ..errors import SoftTimeLimitExceeded, TaskRevokedError, Terminated, TimeLimitExceeded
from . import execute, revoked
from .execute import (
    ExecContext,
    Job,
    Outcome,
    invoke,
    result_expires_s,
)

if TYPE_CHECKING:
    from .runtime import WorkerRuntime

logger = logging.getLogger(__name__)

T = TypeVar("T")

TICK_S = 0.05
RECYCLE_GRACE_S = 2.0  # how long a task told to stop may take before it is abandoned
RECYCLE_DRAIN_S = 10.0  # how long the other running tasks get before the re-exec
LIMIT_ERRORS = (SoftTimeLimitExceeded, TimeLimitExceeded, Terminated)


def limits_for(runtime: WorkerRuntime, job: Job) -> tuple[float | None, float | None]:
    """(hard, soft) in seconds: the call's ``time_limit``/``soft_time_limit``, else the
    task's, else the worker's (--time-limit, task_time_limit and their soft twins)."""
    hard, soft = job.message.timelimit
    if hard is None:
        hard = job.task.time_limit if job.task.time_limit is not None else runtime.time_limit_s
    if soft is None:
        soft = (
            job.task.soft_time_limit
            if job.task.soft_time_limit is not None
            else runtime.soft_time_limit_s
        )
    return (float(hard) if hard else None), (float(soft) if soft else None)


@dataclass
class Watch:
    """One running invocation."""

    job: Job
    target: Any  # what the interrupter raises in: a thread ident, a greenlet
    started: float
    soft_s: float | None
    hard_s: float | None
    lock: threading.Lock = field(default_factory=threading.Lock)
    running: bool = True
    soft_sent: bool = False
    stop_sent_at: float | None = None  # when TimeLimitExceeded or Terminated was raised
    terminated: bool = False
    abandoned: bool = False
    pending: BaseException | None = None  # for the signal interrupter


class Interrupter:
    """Raises an exception inside a running task."""

    def target(self) -> Any:
        raise NotImplementedError

    def raise_in(self, watch: Watch, exc: BaseException) -> None:
        raise NotImplementedError

    def cancel(self, watch: Watch) -> None:
        """Take back an exception raised but not yet delivered (the task just ended)."""

    can_abandon = True  # a stuck task is abandoned and the process recycled


class ThreadInterrupter(Interrupter):
    """An asynchronous exception: delivered at the thread's next Python instruction, so a
    thread blocked in one long C call gets it only when that call returns."""

    def target(self) -> Any:
        return threading.get_ident()

    def raise_in(self, watch: Watch, exc: BaseException) -> None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(watch.target), ctypes.py_object(type(exc))
        )

    def cancel(self, watch: Watch) -> None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(watch.target), None)


class SignalInterrupter(Interrupter):
    """Solo runs tasks in the main thread: SIGALRM interrupts even a blocking sleep or
    socket read there, and its handler raises the pending exception."""

    def __init__(self) -> None:
        self.current: Watch | None = None
        signal.signal(signal.SIGALRM, self._on_alarm)

    def target(self) -> Any:
        return threading.main_thread().ident

    def raise_in(self, watch: Watch, exc: BaseException) -> None:
        watch.pending = exc
        self.current = watch
        os.kill(os.getpid(), signal.SIGALRM)

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        watch = self.current
        if watch is None or not watch.running or watch.pending is None:
            return
        exc, watch.pending = watch.pending, None
        raise exc

    def cancel(self, watch: Watch) -> None:
        watch.pending = None


class GreenInterrupter(Interrupter):
    """gevent and eventlet: the exception is thrown into the task's greenlet from the hub,
    the next time the running greenlet yields. One that never yields cannot be stopped (it
    keeps the watchdog from running too): green pools are for I/O-bound tasks."""

    can_abandon = False

    def __init__(self, schedule: Callable[[Callable[[], None]], None]) -> None:
        self.schedule = schedule

    def target(self) -> Any:
        import greenlet  # type: ignore[import-untyped]

        return greenlet.getcurrent()

    def raise_in(self, watch: Watch, exc: BaseException) -> None:
        def throw() -> None:
            if watch.running and not watch.target.dead:
                watch.target.throw(exc)

        self.schedule(throw)


def gevent_interrupter() -> GreenInterrupter:
    import gevent

    return GreenInterrupter(lambda fn: gevent.get_hub().loop.run_callback(fn))


def eventlet_interrupter() -> GreenInterrupter:
    from eventlet.hubs import get_hub

    return GreenInterrupter(lambda fn: get_hub().schedule_call_global(0, fn))


class Watchdog:
    """Enforces the limits of every running invocation of one consuming process."""

    def __init__(self, runtime: WorkerRuntime, interrupter: Interrupter) -> None:
        self.runtime = runtime
        self.interrupter = interrupter
        self.watches: dict[str, Watch] = {}  # task id -> watch
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.ctx: ExecContext | None = None
        self.recycling = False
        self.serving_done = threading.Event()
        self.on_abandon: Callable[[], None] | None = None  # the slot of a stuck task is free
        # only a worker process of its own may be recycled (exec): never a program that
        # runs a pool in one of its threads (start_worker in a test, an embedding app)
        self.may_recycle = False
        self._terminated: set[str] = set()

    # the handler: runs in the task's slot
    def handle(self, ctx: ExecContext, delivery: Delivery) -> None:
        self.ctx = ctx
        execute.handle(ctx, delivery, self._run_watched)

    def _run_watched(self, ctx: ExecContext, job: Job) -> Outcome | None:
        outcome, watch = self._watched(ctx, job)
        if watch.abandoned:
            return None  # the watchdog stored its failure and acked it
        if watch.terminated:
            _store_terminated(ctx, job)
            return None
        return outcome

    def invoke(self, ctx: ExecContext, job: Job) -> Outcome:
        """Only the task call, under the limits, in the calling thread (the asyncio pool's
        plain ``def`` tasks): the caller accepts, finishes, and asks ``was_terminated``."""
        outcome, watch = self._watched(ctx, job)
        if watch.terminated:
            self._terminated.add(job.message.id)
        return outcome

    def was_terminated(self, ctx: ExecContext, job: Job) -> bool:
        """Store REVOKED for a task ``invoke`` saw terminated (True), as prefork does."""
        return _settle_terminated(ctx, job, self._terminated)

    def _watched(self, ctx: ExecContext, job: Job) -> tuple[Outcome, Watch]:
        """The task called under its limits, and the watch that saw it run."""
        hard, soft = limits_for(self.runtime, job)
        watch = Watch(job, self.interrupter.target(), time.monotonic(), soft, hard)
        self._add(watch)
        return self._invoke(ctx, job, watch), watch

    def _invoke(self, ctx: ExecContext, job: Job, watch: Watch) -> Outcome:
        outcome: Outcome | None = None
        try:
            outcome = invoke(ctx, job)
        except LIMIT_ERRORS as exc:  # delivered just outside the task's own frame
            outcome = Outcome(states.FAILURE, exc=exc)
        finally:
            # an exception raised but not delivered yet must not land in pool code
            for _ in range(3):
                try:
                    self._end(watch)
                    break
                except LIMIT_ERRORS:
                    continue
        if outcome.state == states.FAILURE and isinstance(outcome.exc, TimeLimitExceeded):
            outcome.exc = TimeLimitExceeded(f"TimeLimitExceeded({watch.hard_s},)")
        return outcome

    def _add(self, watch: Watch) -> None:
        if watch.soft_s is None and watch.hard_s is None:
            with self._lock:
                self.watches[watch.job.message.id] = watch
            return
        with self._lock:
            self.watches[watch.job.message.id] = watch
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="celeriac-time-limits", daemon=True
                )
                self._thread.start()

    def _end(self, watch: Watch) -> None:
        with watch.lock:
            watch.running = False
            sent = watch.soft_sent or watch.stop_sent_at is not None
        if sent:
            self.interrupter.cancel(watch)
        with self._lock:
            self.watches.pop(watch.job.message.id, None)

    # remote control
    def running_ids(self) -> set[str]:
        with self._lock:
            return set(self.watches)

    def terminate(self, task_id: str, signum: int) -> bool:
        with self._lock:
            watch = self.watches.get(task_id)
        if watch is None:
            return False
        with watch.lock:
            if not watch.running:
                return False
            watch.terminated = True
            watch.stop_sent_at = time.monotonic()
            self.interrupter.raise_in(watch, Terminated(f"terminated by signal {signum}"))
        logger.warning(
            "terminating %s[%s] (revoke with terminate=True)",
            watch.job.message.task,
            task_id,
        )
        self._ensure_thread()
        return True

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="celeriac-time-limits", daemon=True
                )
                self._thread.start()

    # the watchdog's loop
    def _loop(self) -> None:
        while not self.recycling:
            time.sleep(TICK_S)
            now = time.monotonic()
            with self._lock:
                watches = list(self.watches.values())
            for watch in watches:
                self._check(watch, now)

    def _check(self, watch: Watch, now: float) -> None:
        elapsed = now - watch.started
        job = watch.job
        with watch.lock:
            if not watch.running:
                return
            if watch.stop_sent_at is not None:
                stuck = now - watch.stop_sent_at > RECYCLE_GRACE_S
                if stuck and self.interrupter.can_abandon and self.may_recycle:
                    watch.abandoned = True
                    watch.running = False
                else:
                    return
            elif watch.hard_s is not None and elapsed >= watch.hard_s:
                logger.error(
                    "hard time limit (%ss) exceeded for %s[%s]",
                    watch.hard_s,
                    job.message.task,
                    job.message.id,
                )
                watch.stop_sent_at = now
                self.interrupter.raise_in(watch, TimeLimitExceeded())
                return
            elif watch.soft_s is not None and elapsed >= watch.soft_s and not watch.soft_sent:
                logger.warning(
                    "soft time limit (%ss) exceeded for %s[%s]",
                    watch.soft_s,
                    job.message.task,
                    job.message.id,
                )
                watch.soft_sent = True
                self.interrupter.raise_in(watch, SoftTimeLimitExceeded())
                return
            else:
                return
        self._abandon(watch)

    def _abandon(self, watch: Watch) -> None:
        job = watch.job
        ctx = self.ctx
        assert ctx is not None
        logger.error(
            "%s[%s] did not stop %.0fs after it was told to; storing its failure and "
            "recycling this worker process",
            job.message.task,
            job.message.id,
            RECYCLE_GRACE_S,
        )
        with self._lock:
            self.watches.pop(job.message.id, None)
        try:
            if watch.terminated:
                _store_terminated(ctx, job, direct=True)
            else:
                exc = TimeLimitExceeded(f"TimeLimitExceeded({watch.hard_s},)")
                meta = build_meta(job.message.id, states.FAILURE, encode_exception(exc))
                ctx.app.backend.store(job.message.id, meta, result_expires_s(ctx.app))
                ctx.app.broker.ack([job.delivery.receipt])
        except Exception:
            logger.exception("could not store the failure of %s", job.message.id)
        if self.on_abandon is not None:
            self.on_abandon()  # so the warm stop below does not wait for it
        self.recycle()

    def served(self) -> None:
        """The pool's consumer returned; if a recycle asked for the stop, the worker execs
        afresh once it has shut down cleanly (Worker.start reads ``recycling``)."""
        self.serving_done.set()

    def recycle(self) -> None:
        """Stop consuming, let the other tasks end, put back what is held, exec afresh."""
        self.recycling = True
        self.runtime.stop.warm.set()
        if self.serving_done.wait(RECYCLE_DRAIN_S):
            return  # the consumer stopped cleanly: the worker execs after its shutdown
        # the consumer's own thread is the stuck one (solo): settle from here and exec
        consumer = self.ctx.consumer if self.ctx is not None else None
        if consumer is not None:
            try:
                consumer.flush_acks()
            except Exception as exc:
                logger.warning("could not send pending acks before the re-exec: %s", exc)
            consumer.requeue_held()
        reexec()


def reexec() -> None:
    """Replace this process with a fresh worker: same pid, same command line."""
    argv = [sys.executable, *getattr(sys, "orig_argv", [sys.executable, *sys.argv])[1:]]
    logger.warning("recycling: exec %s", " ".join(argv))
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed stream has nothing left to flush
            stream.flush()
    os.execv(sys.executable, argv)


def _settle_terminated(ctx: ExecContext, job: Job, terminated: set[str]) -> bool:
    """Store REVOKED for *job* when its id is among *terminated* (taken out): True then."""
    if job.message.id not in terminated:
        return False
    terminated.discard(job.message.id)
    _store_terminated(ctx, job)
    return True


def _store_terminated(ctx: ExecContext, job: Job, direct: bool = False) -> None:
    """REVOKED ["terminated"], as for prefork; the message is acked."""
    exc = TaskRevokedError("terminated")
    meta = build_meta(job.message.id, states.REVOKED, encode_exception(exc))
    try:
        ctx.app.backend.store(job.message.id, meta, result_expires_s(ctx.app))
    except Exception:
        logger.exception("could not store the revoke of %s", job.message.id)
    revoked.finished(job.message.id)
    if direct:
        ctx.app.broker.ack([job.delivery.receipt])
    elif not job.acked:
        ctx.ack_now_or_later(job.delivery.receipt, after_result=True)
        job.acked = True


# the asyncio pool: limits on the loop itself
class ThrowingAwait(Generic[T]):
    """Await a coroutine and let another party throw an exception into it at its current
    ``await``: the way in is a cancel of the asyncio task, which is turned into that
    exception here, so the task body sees SoftTimeLimitExceeded (say), not CancelledError."""

    def __init__(self, coro: Coroutine[Any, Any, T]) -> None:
        self.coro = coro
        self.pending: BaseException | None = None

    def __await__(self) -> Generator[Any, Any, T]:
        coro = self.coro
        value: Any = None
        exc: BaseException | None = None
        while True:
            try:
                yielded = coro.send(value) if exc is None else coro.throw(exc)
            except StopIteration as stop:
                result: T = stop.value
                return result
            value, exc = None, None
            try:
                value = yield yielded
            except asyncio.CancelledError as cancelled:
                if self.pending is not None:
                    exc, self.pending = self.pending, None
                    uncancel = getattr(asyncio.current_task(), "uncancel", None)
                    if uncancel is not None:  # Python 3.11+: this cancel is taken back
                        uncancel()
                else:
                    exc = cancelled
            except BaseException as other:  # thrown in by the loop: pass it down
                exc = other


class AsyncLimits:
    """Soft and hard limits and terminate for coroutine tasks on the asyncio pool's loop."""

    def __init__(self, runtime: WorkerRuntime, loop: asyncio.AbstractEventLoop) -> None:
        self.runtime = runtime
        self.loop = loop
        self.running: dict[str, tuple[asyncio.Task[Any], ThrowingAwait[Outcome], Job]] = {}
        self.terminated: set[str] = set()

    async def invoke(self, coro: Coroutine[Any, Any, Outcome], job: Job) -> Outcome:
        hard, soft = limits_for(self.runtime, job)
        task_id = job.message.id
        driver = ThrowingAwait(coro)
        current = asyncio.current_task()
        assert current is not None
        self.running[task_id] = (current, driver, job)
        timers = []
        if soft:
            timers.append(self.loop.call_later(soft, self._throw, task_id, "soft"))
        if hard:
            timers.append(self.loop.call_later(hard, self._throw, task_id, "hard"))
        try:
            outcome = await driver
        finally:
            for timer in timers:
                timer.cancel()
            self.running.pop(task_id, None)
        if outcome.state == states.FAILURE and isinstance(outcome.exc, TimeLimitExceeded):
            outcome.exc = TimeLimitExceeded(f"TimeLimitExceeded({hard},)")
        return outcome

    def _throw(self, task_id: str, why: str) -> None:
        found = self.running.get(task_id)
        if found is None:
            return
        task, driver, job = found
        exc: BaseException
        if why == "soft":
            exc = SoftTimeLimitExceeded()
            logger.warning("soft time limit exceeded for %s[%s]", job.message.task, task_id)
        elif why == "hard":
            exc = TimeLimitExceeded()
            logger.error("hard time limit exceeded for %s[%s]", job.message.task, task_id)
        else:
            exc = Terminated("terminated")
            self.terminated.add(task_id)
            logger.warning("terminating %s[%s] (revoke, terminate=True)", job.message.task, task_id)
        driver.pending = exc
        task.cancel()

    def terminate(self, task_id: str, signum: int) -> bool:
        """From any thread: True when the task runs here and was told to stop."""
        if task_id not in self.running:
            return False
        self.loop.call_soon_threadsafe(self._throw, task_id, "terminate")
        return True

    def was_terminated(self, ctx: ExecContext, job: Job) -> bool:
        """Store REVOKED for a terminated task (True), as prefork does."""
        return _settle_terminated(ctx, job, self.terminated)
