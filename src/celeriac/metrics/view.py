"""The metrics as a view of the task lifecycle (``celeriac.lifecycle``).

Subscribed only by a worker started with ``--metrics-port``: without it no hook exists and
each point costs its emitter one truth test. Every process that runs tasks counts its own
(the solo, threads and green pools' process, each prefork child) into prometheus_client's
multiprocess files (see ``celeriac.metrics.store``); the process that serves ``/metrics``
adds them up at each scrape.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from .. import lifecycle
from . import recovery
from .families import TaskMetrics

if TYPE_CHECKING:
    from ..brokers.base import Delivery
    from ..lifecycle import OutgoingMessage, Terminated
    from ..worker.execute import ExecContext, Job, Outcome


def host_of(nodename: str | None) -> str:
    """celery-exporter's ``hostname`` label: the host part of ``name@host``."""
    if not nodename:
        return socket.gethostname()
    return nodename.partition("@")[2] or nodename


class MetricsView:
    """The hooks; one instance per worker, inherited by prefork children at the fork."""

    def __init__(self, metrics: TaskMetrics, nodename: str, pool: str) -> None:
        self.m = metrics
        self.host = host_of(nodename)
        self.pool = pool
        self._local_host = socket.gethostname()

    def _labels(self, job: Job) -> tuple[str, str, str]:
        return (job.message.task, self.host, job.delivery.queue)

    @staticmethod
    def _child(ctx: ExecContext) -> str:
        index = ctx.place_base.get("child_index")
        return "" if index is None else str(index)

    # the client side of a worker (tasks that send tasks)
    def published(self, message: OutgoingMessage) -> None:
        self.m.sent.labels(message.name, self._local_host, message.queue).inc()

    # one task
    def received(self, ctx: ExecContext, job: Job) -> None:
        self.m.received.labels(*self._labels(job)).inc()

    def started(self, ctx: ExecContext, job: Job, request: Any) -> None:
        self.m.started.labels(*self._labels(job)).inc()
        self.m.tasks_active.labels(self.host).inc()
        self.m.child_active.labels(self.host, self.pool, self._child(ctx)).inc()

    def succeeded(self, ctx: ExecContext, job: Job, outcome: Outcome) -> None:
        labels = self._labels(job)
        self.m.succeeded.labels(*labels).inc()
        self.m.runtime.labels(*labels).observe(outcome.runtime_s)

    def failed(self, ctx: ExecContext, job: Job, outcome: Outcome) -> None:
        name, host, queue = self._labels(job)
        exception = type(outcome.exc).__name__ if outcome.exc is not None else "UnknownException"
        self.m.failed.labels(name, host, exception, queue).inc()

    def retried(self, ctx: ExecContext, job: Job, outcome: Outcome) -> None:
        self.m.retried.labels(*self._labels(job)).inc()

    def finished(self, ctx: ExecContext, job: Job, outcome: Outcome) -> None:
        child = self._child(ctx)
        self.m.tasks_active.labels(self.host).dec()
        self.m.child_active.labels(self.host, self.pool, child).dec()
        self.m.child_processed.labels(self.host, self.pool, child).inc()

    def revoked(
        self,
        ctx: ExecContext | None,
        job: Job | Terminated,
        terminated: bool,
        signum: int | None,
        expired: bool,
    ) -> None:
        if isinstance(job, lifecycle.Terminated):  # stopped in its child by the manager
            self.m.revoked.labels(job.name, self.host, "").inc()
            return
        self.m.revoked.labels(*self._labels(job)).inc()

    def rejected(self, ctx: ExecContext, delivery: Delivery, exc: Exception | None) -> None:
        self.m.rejected.labels("unknown", self.host, delivery.queue).inc()

    def unknown(self, ctx: ExecContext, delivery: Delivery, message: Any, exc: Any) -> None:
        name = str(getattr(message, "task", "") or "unknown")
        self.m.rejected.labels(name, self.host, delivery.queue).inc()

    # recovery
    def recovered(self, restored: int, dead_lettered: int) -> None:
        if restored:
            self.m.restored.labels(self.host).inc(restored)
        if dead_lettered:
            self.m.dead_lettered.labels(self.host).inc(dead_lettered)

    def lost(self, task_name: str) -> None:
        self.m.lost.labels(self.host, task_name).inc()

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
        ]

    def install(self) -> None:
        """Subscribe every hook (before the prefork fork, so children inherit them)."""
        for point, hook in self.pairs():
            point.subscribe(hook)
        recovery.listen(self.recovered, self.lost)

    def uninstall(self) -> None:
        for point, hook in self.pairs():
            point.unsubscribe(hook)
        recovery.stop_listening()
