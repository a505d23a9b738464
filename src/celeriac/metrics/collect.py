"""What is read at scrape time rather than counted: worker up, queue lengths, readiness,
the consume loops' ages, the pool's size and flow control's parked tasks."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .health import Readiness

if TYPE_CHECKING:
    from ..app import Celeriac

logger = logging.getLogger(__name__)


class WorkerCollector(Collector):
    def __init__(
        self,
        app: Celeriac,
        host: str,
        pool: str,
        concurrency: Callable[[], int],
        queues: Callable[[], Sequence[str]],
        readiness: Callable[[], Readiness],
    ) -> None:
        self.app = app
        self.host = host
        self.pool = pool
        self.concurrency = concurrency
        self.queues = queues
        self.readiness = readiness
        self._broker: Any = None  # a connection of the scrape thread's own

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "celery_worker_up",
            "Indicates if a worker is up (1 while it serves).",
            labels=["hostname"],
        )
        up.add_metric([self.host], 1.0)
        yield up
        yield self._queue_lengths()
        ready = self.readiness()
        gauge = GaugeMetricFamily(
            "celeriac_worker_ready", "1 when /readyz answers 200.", labels=["hostname"]
        )
        gauge.add_metric([self.host], 1.0 if ready.ready else 0.0)
        yield gauge
        ages = GaugeMetricFamily(
            "celeriac_consume_loop_age_seconds",
            "Seconds since each consume loop last went round (0 while it runs a task).",
            labels=["hostname", "pool", "child"],
        )
        for child, age in sorted(ready.loop_ages.items()):
            ages.add_metric([self.host, self.pool, child], age)
        yield ages
        size = GaugeMetricFamily(
            "celeriac_worker_pool_processes",
            "The pool's concurrency now (prefork: children).",
            labels=["hostname", "pool"],
        )
        size.add_metric([self.host, self.pool], float(self.concurrency()))
        yield size
        parked = self._parked()
        if parked is not None:
            yield parked

    def _queue_lengths(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "celery_queue_length", "The number of message in broker queue.", labels=["queue_name"]
        )
        try:
            if self._broker is None:
                from ..brokers import make_broker

                self._broker = make_broker(
                    self.app.broker_url, self.app.conf, client_name="celeriac.metrics"
                )
            for queue in self.queues():
                family.add_metric([queue], float(self._broker.queue_length(queue)))
        except Exception as exc:  # the broker is away: the other metrics still go out
            logger.debug("queue lengths not read for /metrics: %s", exc)
        return family

    def _parked(self) -> GaugeMetricFamily | None:
        try:
            from ..flow import runtime as flow_runtime

            stats = flow_runtime.stats(self.app)
        except Exception as exc:
            logger.debug("flow control's parked count not read for /metrics: %s", exc)
            return None
        family = GaugeMetricFamily(
            "celeriac_rate_limit_parked",
            "Tasks parked broker-side by flow control now (rate_limit, max_concurrency).",
            labels=["hostname", "name"],
        )
        for name, task in sorted(stats.get("tasks", {}).items()):
            if "parked" in task:
                family.add_metric([self.host, name], float(task["parked"]))
        return family

    def close(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            try:
                broker.close()
            except Exception as exc:
                logger.debug("closing the metrics broker connection: %s", exc)
