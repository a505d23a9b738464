"""The metrics: celery-exporter's names and labels first, so Grafana dashboards built for it
read a celeriac worker unchanged, then celeriac's own (``celeriac_*``).

``TaskMetrics(registry)`` makes them on any registry: the worker's (fed by its lifecycle
view, aggregated over prefork children) or a dashboard's (fed by events).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# celery-exporter's default --buckets: prometheus_client's default histogram buckets
RUNTIME_BUCKETS: tuple[float, ...] = tuple(Histogram.DEFAULT_BUCKETS)

TASK_LABELS = ("name", "hostname", "queue_name")
FAILED_LABELS = ("name", "hostname", "exception", "queue_name")


class TaskMetrics:
    """Every metric a task's life moves, on *registry*."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry

        def counter(name: str, doc: str, labels: tuple[str, ...] = TASK_LABELS) -> Counter:
            return Counter(name, doc, labels, registry=r)

        # celery-exporter's
        self.sent = counter("celery_task_sent", "Sent when a task message is published.")
        self.received = counter("celery_task_received", "Sent when the worker receives a task.")
        self.started = counter(
            "celery_task_started", "Sent just before the worker executes the task."
        )
        self.succeeded = counter("celery_task_succeeded", "Sent if the task executed successfully.")
        self.failed = counter(
            "celery_task_failed", "Sent if the execution of the task failed.", FAILED_LABELS
        )
        self.rejected = counter(
            "celery_task_rejected",
            "The task was rejected by the worker (a message that is not a runnable task).",
        )
        self.revoked = counter("celery_task_revoked", "Sent if the task has been revoked.")
        self.retried = counter(
            "celery_task_retried", "Sent if the task failed, but will be retried in the future."
        )
        self.runtime = Histogram(
            "celery_task_runtime",
            "Histogram of task runtime measurements.",
            TASK_LABELS,
            registry=r,
            buckets=RUNTIME_BUCKETS,
            unit="seconds",
        )
        self.tasks_active = Gauge(
            "celery_worker_tasks_active",
            "The number of tasks the worker is currently processing",
            ("hostname",),
            registry=r,
            multiprocess_mode="livesum",
        )
        # celeriac's own: where tasks ran, and what recovery did
        self.child_processed = counter(
            "celeriac_child_tasks_processed",
            "Tasks finished, per pool and child (child is '' outside prefork).",
            ("hostname", "pool", "child"),
        )
        self.child_active = Gauge(
            "celeriac_child_tasks_active",
            "Tasks running now, per pool and child.",
            ("hostname", "pool", "child"),
            registry=r,
            multiprocess_mode="livesum",
        )
        self.restored = counter(
            "celeriac_messages_restored",
            "Messages put back on their queue by recovery (a dead worker's, or at shutdown).",
            ("hostname",),
        )
        self.dead_lettered = counter(
            "celeriac_messages_dead_lettered",
            "Messages moved to the dead-letter list by recovery (task_max_redeliveries).",
            ("hostname",),
        )
        self.lost = counter(
            "celeriac_tasks_lost",
            "Tasks whose prefork child died while running them (WorkerLostError, time limit).",
            ("hostname", "name"),
        )
