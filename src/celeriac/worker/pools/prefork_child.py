"""The life of one prefork child: its own connections, signals, limits and consumer loop."""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import resource
import signal
import stat
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING

from ... import lifecycle, states
from ...brokers.base import Delivery
from ...errors import SoftTimeLimitExceeded
from ..execute import (
    ExecContext,
    Job,
    Outcome,
    accept,
    acks_late,
    begin,
    finish,
    internal_error,
    invoke,
)
from ..place import CHILD_NAME
from ..runtime import ColdShutdown, StopFlags, WorkerRuntime
from ..serve import make_context, serve_in_process
from .solo import InlineSlots

if TYPE_CHECKING:
    from .prefork_slots import SlotTable

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
# the manager's pid, set by the manager before it forks: a child that finds another parent
# right after asking for PDEATHSIG was orphaned before it asked, and would never get it
manager_pid: int | None = None


def child_main(runtime: WorkerRuntime, index: int, table: SlotTable) -> int:
    """Run in a freshly forked child until told to stop; returns the exit code."""
    _die_with_parent()
    _close_inherited_sockets()
    pid = os.getpid()
    multiprocessing.current_process().name = f"{CHILD_NAME}-{index + 1}"
    runtime.stop = StopFlags()  # the manager's events are not ours
    runtime.app.client_name = f"celeriac.child{index}.{pid}"
    runtime.app.close()  # drops the parent's clients; ours open on first use
    _install_child_signals(runtime.stop)
    slots = InlineSlots()
    ctx = make_context(runtime, slots, "prefork", child_index=index)
    limits = _Limits(runtime, index, table)
    _announce(runtime)

    def should_stop() -> bool:
        return limits.exhausted(ctx)

    def handler(ctx: ExecContext, delivery: Delivery) -> None:
        _handle_with_limits(ctx, delivery, limits)

    multiplier = max(1, runtime.prefetch_multiplier)

    def prefetch_target() -> int:
        # hold more than the running one only while every sibling is busy: never while
        # one is idle or still starting (it would find the queue empty and sit idle)
        return multiplier if table.siblings_consuming(index) else 1

    # Django's per-child connections and the like: after the fork, before the first task
    if lifecycle.worker_process_started.hooks:
        lifecycle.worker_process_started.emit(runtime.nodename)
    exitcode = 1
    try:
        serve_in_process(
            runtime,
            slots,
            "prefork",
            child_index=index,
            should_stop=should_stop,
            ctx=ctx,
            handler=handler,
            prefetch_target=prefetch_target,
            should_hand_back=lambda: table.sibling_waiting(index),
            on_waiting=lambda waiting: table.set_waiting(index, waiting),
        )
        exitcode = 0
    finally:
        if lifecycle.worker_process_stopping.hooks:
            lifecycle.worker_process_stopping.emit(runtime.nodename, pid, exitcode)
        runtime.app.close()
        sys.stdout.flush()
        sys.stderr.flush()
    return 0


def _announce(runtime: WorkerRuntime) -> None:
    """Beat once for this child's own owner id before it takes any message. The manager
    beats for its children, but only every interval: a worker killed whole before it names
    a new child would leave what that child took to the visibility timeout, since the sweeps
    only know owners that beat at least once."""
    broker = runtime.app.broker
    try:
        broker.heartbeat([broker.owner])
    except Exception as exc:  # the broker may be down; the consumer reports that too
        logger.warning("child could not announce itself: %s", exc)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this child if the manager dies, so no orphan keeps consuming
    unsupervised; its held messages are then recovered through the stopped heartbeat."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        logger.debug("prctl(PR_SET_PDEATHSIG) unavailable", exc_info=True)
    if manager_pid is not None and os.getppid() != manager_pid:
        os._exit(0)  # the manager died between the fork and the prctl: nobody supervises us


def _close_inherited_sockets() -> None:
    """Close every socket inherited from the manager: a child only ever talks to Redis on
    connections it opened itself, and a shared socket would corrupt both sides' protocol."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return
    # dup2 /dev/null over each one rather than close it: a stale socket object that closes
    # "its" fd later then closes only this placeholder, never a connection opened since
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in fds:
            if fd <= 2 or fd == devnull:
                continue
            try:
                if stat.S_ISSOCK(os.fstat(fd).st_mode):
                    os.dup2(devnull, fd)
            except OSError:
                continue
    finally:
        os.close(devnull)


def _install_child_signals(stop: StopFlags) -> None:
    def warm(signum: int, frame: FrameType | None) -> None:
        stop.warm.set()

    def cold(signum: int, frame: FrameType | None) -> None:
        stop.warm.set()
        stop.cold.set()
        raise ColdShutdown()

    signal.signal(signal.SIGTERM, warm)
    signal.signal(signal.SIGQUIT, cold)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the manager, which relays it
    signal.signal(signal.SIGALRM, _on_soft_limit)


def _on_soft_limit(signum: int, frame: FrameType | None) -> None:
    raise SoftTimeLimitExceeded("soft time limit exceeded")


class _Limits:
    """Time limits for the running task and the child's own recycling limits."""

    def __init__(self, runtime: WorkerRuntime, index: int, table: SlotTable) -> None:
        self.runtime = runtime
        self.index = index
        self.table = table

    def limits_for(self, job: Job) -> tuple[float | None, float | None]:
        hard, soft = job.message.timelimit
        if hard is None:
            hard = (
                job.task.time_limit
                if job.task.time_limit is not None
                else (self.runtime.time_limit_s)
            )
        if soft is None:
            soft = (
                job.task.soft_time_limit
                if job.task.soft_time_limit is not None
                else (self.runtime.soft_time_limit_s)
            )
        return hard, soft

    def exhausted(self, ctx: ExecContext) -> bool:
        max_tasks = self.runtime.max_tasks_per_child
        if max_tasks and ctx.processed >= max_tasks:
            logger.info(
                "child %d: %d tasks done (max %d); recycling", self.index, ctx.processed, max_tasks
            )
            return True
        max_kib = self.runtime.max_memory_per_child_kib
        if max_kib:
            rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            if rss_kib > max_kib:
                logger.warning(
                    "child %d: resident memory %d KiB over the %d KiB limit; recycling",
                    self.index,
                    rss_kib,
                    max_kib,
                )
                return True
        return False


def _handle_with_limits(ctx: ExecContext, delivery: Delivery, limits: _Limits) -> None:
    job = None
    try:
        job = accept(ctx, delivery)
        if job is None:
            return
        hard, soft = limits.limits_for(job)
        limits.table.start(
            limits.index,
            job.message.id,
            job.message.task,
            delivery.receipt,
            hard,
            acks_late(ctx, job.task),
            time.time(),
        )
        try:
            begin(ctx, job)
            outcome = _invoke_with_soft_limit(ctx, job, soft)
            finish(ctx, job, outcome)
        finally:
            limits.table.clear(limits.index)
    except Exception as exc:
        internal_error(ctx, delivery, job, exc)


def _invoke_with_soft_limit(ctx: ExecContext, job: Job, soft_s: float | None) -> Outcome:
    if not soft_s:
        return invoke(ctx, job)
    try:
        signal.setitimer(signal.ITIMER_REAL, soft_s)
        try:
            return invoke(ctx, job)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except SoftTimeLimitExceeded as exc:  # fired between the task's return and the disarm
        return Outcome(states.FAILURE, exc=exc)
