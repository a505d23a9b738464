"""A running summary of a cluster, built from its events alone: workers, tasks per state,
throughput. ``celeriac events`` draws it; it works for Celery's workers too.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from . import wire

#: an event type → the task state it means (Celery's names)
TASK_STATES = {
    "task-sent": "PENDING",
    "task-received": "RECEIVED",
    "task-started": "STARTED",
    "task-succeeded": "SUCCESS",
    "task-failed": "FAILURE",
    "task-retried": "RETRY",
    "task-revoked": "REVOKED",
    "task-rejected": "REJECTED",
}
STATE_ORDER = tuple(TASK_STATES.values())
FINISHED = frozenset({"SUCCESS", "FAILURE", "REVOKED", "REJECTED"})
MAX_TASKS = 10_000  # tasks remembered (the oldest are forgotten first)
THROUGHPUT_WINDOW_S = 10.0


@dataclass
class WorkerSummary:
    hostname: str
    pid: int | None = None
    pool: str | None = None
    software: str = ""
    active: int = 0
    processed: int = 0
    loadavg: list[float] = field(default_factory=list)
    freq_s: float = 2.0
    last_seen: float = 0.0  # local time of its last event
    offline: bool = False

    def alive(self, now: float) -> bool:
        """Celery's rule: alive until it says goodbye or misses its beats (freq + 2 s)."""
        return not self.offline and now - self.last_seen <= self.freq_s + 2.0


@dataclass
class TaskSummary:
    uuid: str
    name: str | None = None
    state: str = "PENDING"
    worker: str | None = None
    runtime_s: float | None = None
    result: str | None = None
    exception: str | None = None


class ClusterMonitor:
    def __init__(self, max_tasks: int = MAX_TASKS) -> None:
        self.workers: dict[str, WorkerSummary] = {}
        self.tasks: OrderedDict[str, TaskSummary] = OrderedDict()
        self.max_tasks = max_tasks
        self.event_count = 0
        self._finished_at: deque[float] = deque()

    def feed(self, event: wire.Event) -> None:
        self.event_count += 1
        event_type = str(event.get("type", ""))
        if event_type.startswith("worker-"):
            self._worker_event(event_type, event)
        elif event_type in TASK_STATES:
            self._task_event(event_type, event)
        hostname = event.get("hostname")
        if isinstance(hostname, str) and hostname in self.workers:
            self.workers[hostname].last_seen = _local_time(event)

    def _worker_event(self, event_type: str, event: wire.Event) -> None:
        hostname = str(event.get("hostname"))
        worker = self.workers.get(hostname) or WorkerSummary(hostname)
        self.workers[hostname] = worker
        worker.pid = event.get("pid", worker.pid)
        worker.pool = event.get("pool", worker.pool)
        worker.software = f"{event.get('sw_ident', '')} {event.get('sw_ver', '')}".strip()
        worker.active = int(event.get("active") or 0)
        worker.processed = int(event.get("processed") or 0)
        worker.loadavg = list(event.get("loadavg") or [])
        worker.freq_s = float(event.get("freq") or 2.0)
        worker.offline = event_type == "worker-offline"

    def _task_event(self, event_type: str, event: wire.Event) -> None:
        uuid = str(event.get("uuid"))
        task = self.tasks.get(uuid)
        if task is None:
            task = self.tasks[uuid] = TaskSummary(uuid)
            if len(self.tasks) > self.max_tasks:
                self.tasks.popitem(last=False)
        state = TASK_STATES[event_type]
        if not (task.state in FINISHED and state not in FINISHED):  # late events lose
            task.state = state
        task.name = event.get("name") or task.name
        if event_type != "task-sent":
            task.worker = event.get("hostname") or task.worker
        if event_type == "task-succeeded":
            task.runtime_s = event.get("runtime")
            task.result = event.get("result")
        elif event_type == "task-failed":
            task.exception = event.get("exception")
        if state in FINISHED:
            self._finished_at.append(_local_time(event))

    def states(self) -> dict[str, int]:
        """How many remembered tasks are in each state."""
        counts = dict.fromkeys(STATE_ORDER, 0)
        for task in self.tasks.values():
            counts[task.state] = counts.get(task.state, 0) + 1
        return counts

    def throughput(self, now: float | None = None) -> float:
        """Tasks finished per second over the last ``THROUGHPUT_WINDOW_S`` seconds."""
        now = time.time() if now is None else now
        while self._finished_at and self._finished_at[0] < now - THROUGHPUT_WINDOW_S:
            self._finished_at.popleft()
        return len(self._finished_at) / THROUGHPUT_WINDOW_S


def _local_time(event: wire.Event) -> float:
    value: Any = event.get("local_received") or event.get("timestamp") or time.time()
    return float(value)
