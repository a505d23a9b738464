"""The dashboard's ``/metrics`` beyond the event counters: workers up, tasks active and
queue lengths, read from what the dashboard already holds (a scrape never waits on the
broker)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .state import DashboardState


class ClusterCollector(Collector):
    def __init__(self, state: DashboardState) -> None:
        self.state = state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = time.time()
        up = GaugeMetricFamily(
            "celery_worker_up",
            "Indicates if a worker has recently sent a heartbeat or answered.",
            labels=["hostname"],
        )
        active = GaugeMetricFamily(
            "celeriac_dashboard_worker_tasks_active",
            "Tasks running now on each worker, as the dashboard last saw them.",
            labels=["hostname"],
        )
        for row in self.state.alive_workers(now):
            host = str(row["hostname"])
            up.add_metric([host], 1.0 if row["alive"] else 0.0)
            tree = row.get("tree") or {}
            running = tree.get("running")
            count = len(running) if isinstance(running, list) else row.get("active") or 0
            active.add_metric([host], float(count))
        yield up
        yield active
        lengths = GaugeMetricFamily(
            "celery_queue_length", "The number of message in broker queue.", labels=["queue_name"]
        )
        dead = GaugeMetricFamily(
            "celeriac_dead_letters",
            "Messages in each queue's dead-letter list.",
            labels=["queue_name"],
        )
        with self.state.lock:
            queues = list(self.state.queues.values())
        for queue in queues:
            lengths.add_metric([str(queue["name"])], float(queue["total"]))
            if queue.get("dead") is not None:
                dead.add_metric([str(queue["name"])], float(queue["dead"]))
        yield lengths
        yield dead
