"""A worker's metrics, put together: ``celeriac worker --metrics-port PORT``.

Why prometheus_client's multiprocess mode for prefork children, rather than children
reporting counts to their manager: counts are labelled by task name, queue and exception,
so they do not fit a fixed shared table, and a pipe to the manager would cost a write per
task plus a reader thread there. In multiprocess mode an increment is a store into the
child's own memory-mapped file (no lock shared with another process), a child's counts
outlive it, and the user's own prometheus_client metrics in tasks are added up too. Those
stores happen on each process's flusher thread, not in the task's (see ``view``). The rest
is paid at scrape time, reading one file per process that ever ran.
"""

from __future__ import annotations

import atexit
import logging
from typing import TYPE_CHECKING, Any

from . import progress
from .health import DEFAULT_WITHIN_S, Readiness, check
from .server import HealthServer
from .store import FilesCollector, MultiprocessDir
from .view import MetricsView, host_of

if TYPE_CHECKING:
    from ..worker.runtime import WorkerRuntime

logger = logging.getLogger(__name__)

DEFAULT_ADDRESS = "127.0.0.1"
_GROW_HEADROOM = 8  # as the prefork pool's own table: children it may grow to


class MetricsService:
    def __init__(
        self,
        runtime: WorkerRuntime,
        store: MultiprocessDir,
        view: MetricsView,
        server: HealthServer,
        table: progress.ProgressTable,
        collector: Any,
    ) -> None:
        self.runtime = runtime
        self.store = store
        self.view = view
        self.server = server
        self.table = table
        self.collector = collector

    @classmethod
    def start(
        cls,
        runtime: WorkerRuntime,
        port: int,
        address: str = DEFAULT_ADDRESS,
        ready_within_s: float | None = None,
    ) -> MetricsService:
        """Listen now and count from now on; call before the pool forks its children."""
        from prometheus_client import CollectorRegistry

        from .collect import WorkerCollector
        from .families import TaskMetrics

        app = runtime.app
        within_s = float(ready_within_s or DEFAULT_WITHIN_S)
        heartbeat_s = float(app.conf.worker_heartbeat_interval)
        bounds = runtime.autoscale
        children = (
            bounds[0] if bounds else runtime.concurrency + max(_GROW_HEADROOM, runtime.concurrency)
        )
        table = progress.enable(1 + children, within_s, heartbeat_s)

        def readiness() -> Readiness:
            return check(table, within_s, heartbeat_s)

        store = MultiprocessDir.take()
        registry = CollectorRegistry()
        registry.register(FilesCollector(store.path))
        host = host_of(runtime.nodename)
        collector = WorkerCollector(
            app,
            host,
            runtime.pool_name,
            concurrency=lambda: runtime.concurrency,
            queues=lambda: (
                runtime.consumed.names() if runtime.consumed is not None else runtime.queues
            ),
            readiness=readiness,
        )
        registry.register(collector)
        # the values live in the files: this registry only gives them their names
        view = MetricsView(TaskMetrics(CollectorRegistry()), runtime.nodename, runtime.pool_name)

        def before_scrape() -> None:
            view.flush()  # this process's own counts are exact at each scrape
            store.forget_dead_processes()

        try:
            server = HealthServer(address, port, registry, readiness, before_scrape=before_scrape)
        except Exception:
            store.close()
            progress.disable()
            raise
        view.install()
        server.start()
        service = cls(runtime, store, view, server, table, collector)
        atexit.register(service.store.close)
        logger.info(
            "metrics on http://%s:%d/metrics (health: /healthz, /readyz)",
            server.address,
            server.port,
        )
        return service

    def stop(self) -> None:
        self.server.stop()
        self.view.uninstall()
        self.collector.close()
        progress.disable()
        self.store.close()
