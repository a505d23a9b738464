"""The metrics as a view of the task lifecycle (``celeriac.lifecycle``).

Subscribed only by a worker started with ``--metrics-port``: without it no hook exists and
each point costs its emitter one truth test. Every process that runs tasks counts its own
(the solo, threads and green pools' process, each prefork child) into prometheus_client's
multiprocess files (see ``celeriac.metrics.store``), from a flusher thread; the process that
serves ``/metrics`` adds them up at each scrape.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import lifecycle
from . import recovery
from .families import TaskMetrics

if TYPE_CHECKING:
    from ..brokers.base import Delivery
    from ..lifecycle import OutgoingMessage, Terminated
    from ..worker.execute import ExecContext, Job, Outcome

logger = logging.getLogger(__name__)


def host_of(nodename: str | None) -> str:
    """celery-exporter's ``hostname`` label: the host part of ``name@host``."""
    if not nodename:
        return socket.gethostname()
    return nodename.partition("@")[2] or nodename


class MetricsView:
    """The hooks; one instance per worker, inherited by prefork children at the fork.

    A hook only appends a small tuple to a queue (``deque.append`` is atomic, so the
    threads pools need no lock); a flusher thread of each process moves the counts into
    prometheus_client's values every ``flush_every_s``, and at once when the process stops
    or (in the process that serves them) before a scrape. A task's thread so pays about a
    microsecond per point, not the multiprocess value's lock, pid check and mmap write.
    """

    def __init__(
        self, metrics: TaskMetrics, nodename: str, pool: str, flush_every_s: float = 0.5
    ) -> None:
        self.m = metrics
        self.host = host_of(nodename)
        self.pool = pool
        self.flush_every_s = flush_every_s
        self._local_host = socket.gethostname()
        self._series: dict[tuple[str, str], _TaskSeries] = {}
        self._slots: dict[int | None, _SlotSeries] = {}
        self._queue: deque[tuple[Any, ...]] = deque()
        self._flush_lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()
        self._installed = False
        self._apply: dict[str, Callable[..., None]] = {
            "received": lambda name, queue, n: self._of(name, queue).received.inc(n),
            "started": self._apply_started,
            "succeeded": self._apply_succeeded,
            "failed": self._apply_failed,
            "retried": lambda name, queue, n: self._of(name, queue).retried.inc(n),
            "revoked": lambda name, queue, n: self._of(name, queue).revoked.inc(n),
            "finished": self._apply_finished,
        }
        os.register_at_fork(after_in_child=self._forked)

    # the task's thread: note it, nothing more
    def _note(self, *item: Any) -> None:
        self._queue.append(item)
        if self._flusher is None:
            self._start_flusher()

    def published(self, message: OutgoingMessage) -> None:
        self.m.sent.labels(message.name, self._local_host, message.queue).inc()

    def received(self, ctx: ExecContext, job: Job) -> None:
        self._note("received", job.message.task, job.delivery.queue)

    def started(self, ctx: ExecContext, job: Job, request: Any) -> None:
        index = ctx.place_base.get("child_index")
        self._note("started", job.message.task, job.delivery.queue, index)

    def succeeded(self, ctx: ExecContext, job: Job, outcome: Outcome) -> None:
        self._note("succeeded", job.message.task, job.delivery.queue, outcome.runtime_s)

    def failed(self, ctx: ExecContext, job: Job, outcome: Outcome) -> None:
        exc = outcome.exc
        exception = type(exc).__name__ if exc is not None else "UnknownException"
        self._note("failed", job.message.task, job.delivery.queue, exception)

    def retried(self, ctx: ExecContext, job: Job, outcome: Outcome) -> None:
        self._note("retried", job.message.task, job.delivery.queue)

    def finished(self, ctx: ExecContext, job: Job, outcome: Outcome) -> None:
        self._note("finished", ctx.place_base.get("child_index"))

    def revoked(
        self,
        ctx: ExecContext | None,
        job: Job | Terminated,
        terminated: bool,
        signum: int | None,
        expired: bool,
    ) -> None:
        if isinstance(job, lifecycle.Terminated):  # stopped in its child by the manager
            self._note("revoked", job.name, "")
            return
        self._note("revoked", job.message.task, job.delivery.queue)

    def rejected(self, ctx: ExecContext, delivery: Delivery, exc: Exception | None) -> None:
        self.m.rejected.labels("unknown", self.host, delivery.queue).inc()

    def unknown(self, ctx: ExecContext, delivery: Delivery, message: Any, exc: Any) -> None:
        name = str(getattr(message, "task", "") or "unknown")
        self.m.rejected.labels(name, self.host, delivery.queue).inc()

    # recovery (rare: counted at once)
    def recovered(self, restored: int, dead_lettered: int) -> None:
        if restored:
            self.m.restored.labels(self.host).inc(restored)
        if dead_lettered:
            self.m.dead_lettered.labels(self.host).inc(dead_lettered)

    def lost(self, task_name: str) -> None:
        self.m.lost.labels(self.host, task_name).inc()

    # the flusher
    def flush(self) -> None:
        """Move every noted point into the metrics (any thread; one at a time). The same
        point of the same series is added up first: one store per series and flush, not
        one per task (runtimes are observed one by one: each has its bucket)."""
        with self._flush_lock:
            counts: dict[tuple[Any, ...], int] = {}
            runtimes: list[tuple[str, str, float]] = []
            queue = self._queue
            while queue:
                try:
                    item = queue.popleft()
                except IndexError:
                    break
                if item[0] == "succeeded":
                    runtimes.append(item[1:])
                    item = item[:3]
                counts[item] = counts.get(item, 0) + 1
            for (op, *args), n in counts.items():
                try:
                    self._apply[op](*args, n)
                except Exception:
                    logger.exception("metrics: could not count %s %r", op, args)
            for name, queue_name, runtime_s in runtimes:
                self._of(name, queue_name).runtime.observe(runtime_s)

    def _of(self, name: str, queue: str) -> _TaskSeries:
        series = self._series.get((name, queue))
        if series is None:
            series = self._series[(name, queue)] = _TaskSeries(self.m, name, self.host, queue)
        return series

    def _slot(self, index: int | None) -> _SlotSeries:
        series = self._slots.get(index)
        if series is None:
            child = "" if index is None else str(index)
            series = self._slots[index] = _SlotSeries(self.m, self.host, self.pool, child)
        return series

    def _apply_started(self, name: str, queue: str, index: int | None, n: int) -> None:
        self._of(name, queue).started.inc(n)
        slot = self._slot(index)
        slot.worker_active.inc(n)
        slot.active.inc(n)

    def _apply_succeeded(self, name: str, queue: str, n: int) -> None:
        self._of(name, queue).succeeded.inc(n)

    def _apply_failed(self, name: str, queue: str, exception: str, n: int) -> None:
        self.m.failed.labels(name, self.host, exception, queue).inc(n)

    def _apply_finished(self, index: int | None, n: int) -> None:
        slot = self._slot(index)
        slot.worker_active.dec(n)
        slot.active.dec(n)
        slot.processed.inc(n)

    def _start_flusher(self) -> None:
        with self._flush_lock:
            if self._flusher is not None:
                return
            self._flusher = threading.Thread(
                target=self._run_flusher, name="celeriac-metrics-flush", daemon=True
            )
            self._flusher.start()

    def _run_flusher(self) -> None:
        while not self._stop.wait(self.flush_every_s):
            self.flush()

    def _forked(self) -> None:
        """In a new child: the parent's notes are the parent's to count; no flusher yet."""
        self._queue = deque()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._flusher = None

    def _process_stopping(self, hostname: str, pid: int, exitcode: int) -> None:
        self.flush()  # a prefork child about to exit: nothing it counted is lost

    def pairs(self) -> list[tuple[lifecycle.Point, Any]]:
        return [
            (lifecycle.task_published, self.published),
            (lifecycle.task_received, self.received),
            (lifecycle.task_started, self.started),
            (lifecycle.task_succeeded, self.succeeded),
            (lifecycle.task_failed, self.failed),
            (lifecycle.task_retried, self.retried),
            (lifecycle.task_finished, self.finished),
            (lifecycle.task_revoked, self.revoked),
            (lifecycle.task_rejected, self.rejected),
            (lifecycle.task_unknown, self.unknown),
            (lifecycle.worker_process_stopping, self._process_stopping),
        ]

    def install(self) -> None:
        """Subscribe every hook (before the prefork fork, so children inherit them)."""
        lifecycle.subscribe_all(self.pairs())
        recovery.listen(self.recovered, self.lost)
        self._installed = True

    def uninstall(self) -> None:
        lifecycle.subscribe_all(self.pairs(), on=False)
        recovery.stop_listening()
        self._installed = False
        self._stop.set()
        self.flush()


class _TaskSeries:
    """One task name on one queue: its celery-exporter series."""

    __slots__ = ("received", "retried", "revoked", "runtime", "started", "succeeded")

    def __init__(self, m: TaskMetrics, name: str, host: str, queue: str) -> None:
        self.received = m.received.labels(name, host, queue)
        self.started = m.started.labels(name, host, queue)
        self.succeeded = m.succeeded.labels(name, host, queue)
        self.retried = m.retried.labels(name, host, queue)
        self.revoked = m.revoked.labels(name, host, queue)
        self.runtime = m.runtime.labels(name, host, queue)


class _SlotSeries:
    """One place tasks run (a prefork child, or the worker's own process)."""

    __slots__ = ("active", "processed", "worker_active")

    def __init__(self, m: TaskMetrics, host: str, pool: str, child: str) -> None:
        self.worker_active = m.tasks_active.labels(host)
        self.active = m.child_active.labels(host, pool, child)
        self.processed = m.child_processed.labels(host, pool, child)
