"""What a worker's processes are doing now, for ``inspect active/scheduled/stats/query_task``
and ``inspect tree``: a lifecycle view.

Each process that runs tasks keeps the requests it runs now, how many tasks of each name it
started (Celery's ``total``), the ETA tasks it parked broker-side and not yet due, and the
last ids it finished (their acks may still be on their way). In-process pools answer from
this process's record. A prefork child writes its record, as JSON, into its own cell of a
shared mapping made before the first fork; the manager, which answers remote control,
reads the cells. A cell is written when a task starts or ends, a few microseconds.
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import struct
import threading
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

import orjson

from .. import lifecycle
from ..protocol import TaskMessage

if TYPE_CHECKING:
    from ..brokers.base import Delivery
    from .execute import ExecContext, Job

CELL_SIZE = 32 * 1024
_HEADER = struct.Struct("=QI")  # version (odd while written), length of the JSON
SMALL_MESSAGE = 4096  # args/kwargs are shown as values up to this size, else as their repr
RECENT = 64  # finished ids kept (acks are deferred: they may still look held)


def request_info(
    message: TaskMessage,
    hostname: str,
    *,
    queue: str = "",
    time_start: float | None = None,
    acknowledged: bool = False,
    worker_pid: int | None = None,
    small: bool = True,
) -> dict[str, Any]:
    """Celery's ``Request.info()``: the dict ``inspect active/reserved/scheduled`` show."""
    properties = message.properties
    delivery = properties.get("delivery_info") or {}
    headers = message.headers
    args: Any = message.args if small else headers.get("argsrepr") or "..."
    kwargs: Any = message.kwargs if small else headers.get("kwargsrepr") or "..."
    return {
        "id": message.id,
        "name": message.task,
        "args": args,
        "kwargs": kwargs,
        "type": message.task,
        "hostname": hostname,
        "time_start": time_start,
        "acknowledged": acknowledged,
        "delivery_info": {
            "exchange": delivery.get("exchange", ""),
            "routing_key": delivery.get("routing_key", queue),
            "priority": properties.get("priority", 0),
            "redelivered": bool(delivery.get("redelivered", False)),
        },
        "worker_pid": worker_pid,
    }


class Record:
    """One process's part: what it runs, what it started, what it parked."""

    def __init__(self) -> None:
        self.active: dict[str, dict[str, Any]] = {}  # task id -> request info (+ "place")
        self.total: Counter[str] = Counter()
        self.scheduled: dict[str, dict[str, Any]] = {}  # task id -> Celery's scheduled entry
        self.finished: deque[str] = deque(maxlen=RECENT)

    def snapshot(self) -> dict[str, Any]:
        now = time.time()
        for task_id, entry in list(self.scheduled.items()):
            if entry["eta_s"] <= now:  # due: promoted to its queue by now, no longer ours
                del self.scheduled[task_id]
        return {
            "pid": os.getpid(),
            "active": list(self.active.values()),
            "total": dict(self.total),
            "scheduled": list(self.scheduled.values()),
            "finished": list(self.finished),
        }


class Cells:
    """One JSON cell per prefork child in memory shared across the fork."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._map = mmap.mmap(-1, max(1, count) * CELL_SIZE)

    def write(self, index: int, value: dict[str, Any]) -> None:
        raw = orjson.dumps(value, default=repr)
        if len(raw) > CELL_SIZE - _HEADER.size:  # big args: keep the ids and counts
            for item in value.get("active", []):
                item["args"], item["kwargs"] = "...", "..."
            value["scheduled"] = value.get("scheduled", [])[:20]
            raw = orjson.dumps(value, default=repr)[: CELL_SIZE - _HEADER.size]
        base = index * CELL_SIZE
        version = struct.unpack_from("=Q", self._map, base)[0]
        struct.pack_into("=Q", self._map, base, version + 1)
        self._map[base + _HEADER.size : base + _HEADER.size + len(raw)] = raw
        _HEADER.pack_into(self._map, base, version + 2, len(raw))

    def read(self, index: int) -> dict[str, Any] | None:
        base = index * CELL_SIZE
        for _ in range(50):
            version, length = _HEADER.unpack_from(self._map, base)
            raw = self._map[base + _HEADER.size : base + _HEADER.size + length]
            if version % 2 == 0 and _HEADER.unpack_from(self._map, base)[0] == version:
                if not length:
                    return None
                try:
                    value = orjson.loads(raw)
                except orjson.JSONDecodeError:  # cut short: too big for its cell
                    return None
                return value if isinstance(value, dict) else None
        return None

    def clear(self, index: int) -> None:
        base = index * CELL_SIZE
        _HEADER.pack_into(self._map, base, 0, 0)


def _child_index() -> int | None:
    name = multiprocessing.current_process().name
    prefix, _, number = name.rpartition("-")
    if prefix != "ForkPoolWorker" or not number.isdigit():
        return None
    return int(number) - 1


class TaskBook:
    """The view: subscribe once, before any fork; read with :meth:`records`."""

    def __init__(self, hostname: str, child_cells: int = 0) -> None:
        self.hostname = hostname
        self.cells = Cells(child_cells) if child_cells else None
        self.record = Record()
        self._lock = threading.Lock()
        self._home_pid = os.getpid()
        self._index: int | None = None  # a prefork child's index, once known

    # the lifecycle hooks (in the process and slot that runs the task)
    def install(self) -> None:
        lifecycle.task_started.subscribe(self.on_started)
        lifecycle.task_finished.subscribe(self.on_finished)
        lifecycle.task_deferred.subscribe(self.on_deferred)
        lifecycle.worker_process_started.subscribe(self.on_process_started)

    def uninstall(self) -> None:
        lifecycle.task_started.unsubscribe(self.on_started)
        lifecycle.task_finished.unsubscribe(self.on_finished)
        lifecycle.task_deferred.unsubscribe(self.on_deferred)
        lifecycle.worker_process_started.unsubscribe(self.on_process_started)

    def on_process_started(self, hostname: str) -> None:
        if os.getpid() != self._home_pid:  # a prefork child: a record of its own
            self.record = Record()
            self._lock = threading.Lock()
            self._index = _child_index()
            if self.cells is not None and self._index is not None:
                # the counts of the child this one replaces go on (Celery counts per worker)
                before = self.cells.read(self._index) if self._index < self.cells.count else None
                self.record.total.update((before or {}).get("total") or {})
            self._publish()

    def on_started(self, ctx: ExecContext, job: Job, request: Any) -> None:
        message = job.message
        place = dict(getattr(request, "place", None) or {})
        info = request_info(
            message,
            ctx.nodename,
            queue=job.delivery.queue,
            time_start=place.get("started_at") or time.time(),
            acknowledged=job.acked,
            worker_pid=os.getpid(),
            small=len(job.delivery.raw) <= SMALL_MESSAGE,
        )
        info["place"] = {k: v for k, v in place.items() if k not in ("hostname", "worker")}
        with self._lock:
            self.record.active[message.id] = info
            self.record.total[message.task] += 1
            self.record.scheduled.pop(message.id, None)
            self._publish()

    def on_finished(self, ctx: ExecContext, job: Job, outcome: Any) -> None:
        with self._lock:
            self.record.active.pop(job.message.id, None)
            self.record.finished.append(job.message.id)
            self._publish()

    def on_deferred(self, ctx: ExecContext, delivery: Delivery, message: TaskMessage) -> None:
        eta = message.eta
        if eta is None:
            return
        entry = {
            "eta": eta.isoformat(),
            "priority": message.priority,
            "request": request_info(
                message,
                ctx.nodename,
                queue=delivery.queue,
                small=len(delivery.raw) <= SMALL_MESSAGE,
            ),
            "eta_s": eta.timestamp(),
        }
        with self._lock:
            self.record.scheduled[message.id] = entry
            self._publish()

    def _publish(self) -> None:
        if self.cells is not None and self._index is not None and self._index < self.cells.count:
            self.cells.write(self._index, self.record.snapshot())

    # the reader (the process answering remote control)
    def records(self, running: dict[int, str | None] | None = None) -> list[dict[str, Any]]:
        """Every process's snapshot. *running* (prefork): live child index -> the task id
        the pool's own table says it runs (None: idle), which wins over a dead child's last
        words; a slot with no live child keeps only its counts."""
        if self.cells is None:
            with self._lock:
                return [self.record.snapshot()]
        found: list[dict[str, Any]] = []
        for index in range(self.cells.count):
            snapshot = self.cells.read(index)
            if snapshot is None:
                continue
            snapshot["child_index"] = index
            if running is not None:
                task_id = running.get(index)
                snapshot["active"] = [a for a in snapshot["active"] if a["id"] == task_id]
                if index not in running:
                    snapshot["scheduled"], snapshot["pid"] = [], None
            found.append(snapshot)
        return found


def scheduled_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """Celery's shape (without our due time in seconds)."""
    return {key: value for key, value in entry.items() if key != "eta_s"}
