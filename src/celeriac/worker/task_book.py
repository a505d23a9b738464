"""What a worker's processes are doing now, for ``inspect active/scheduled/stats/query_task``
and ``inspect tree``: a lifecycle view.

Each process that runs tasks keeps the tasks it runs now, how many tasks of each name it
started (Celery's ``total``), the ETA tasks it parked broker-side and not yet due, and the
last ids it finished (their acks may still be on their way). In-process pools keep
references and build Celery's request dicts only when asked. A prefork child copies what
the manager (which answers remote control) needs into its own cell of a shared mapping
made before the first fork: at a task's start the message as it came and a few facts, and
one counter per task name, a few microseconds per task; the manager reads the message
only when asked.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

import orjson

from .. import lifecycle
from ..protocol import TaskMessage, parse_envelope
from .place import child_index

if TYPE_CHECKING:
    from ..brokers.base import Delivery
    from .execute import ExecContext, Job

SMALL_MESSAGE = 4096  # args/kwargs are shown as values up to this size, else as their repr
RECENT = 64  # finished ids kept (acks are deferred: they may still look held)
PLACE_KEYS = ("pid", "child_index", "thread_id", "thread_name", "greenlet", "asyncio_task")


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


def _place_of(request: Any) -> dict[str, Any]:
    place = getattr(request, "place", None) or {}
    return {key: place.get(key) for key in PLACE_KEYS}


def _started_at(request: Any) -> float:
    place = getattr(request, "place", None) or {}
    value = place.get("started_at")
    return float(value) if isinstance(value, (int, float)) else time.time()


class Record:
    """One process's part: what it runs, what it started, what it parked."""

    def __init__(self) -> None:
        # task id -> (message, queue, small, acked, place, started_at): made into Celery's
        # request dict only when someone asks
        self.active: dict[str, tuple[TaskMessage, str, bool, bool, dict[str, Any], float]] = {}
        self.total: Counter[str] = Counter()
        self.scheduled: dict[str, dict[str, Any]] = {}  # task id -> Celery's scheduled entry
        self.finished: deque[str] = deque(maxlen=RECENT)

    def snapshot(self, hostname: str) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "active": [
                active_info(message, hostname, queue, small, acked, place, started)
                for message, queue, small, acked, place, started in list(self.active.values())
            ],
            "total": dict(self.total),
            "scheduled": _not_due(list(self.scheduled.values())),
            "finished": list(self.finished),
        }


def active_info(
    message: TaskMessage,
    hostname: str,
    queue: str,
    small: bool,
    acked: bool,
    place: dict[str, Any],
    started: float,
) -> dict[str, Any]:
    info = request_info(
        message,
        hostname,
        queue=queue,
        time_start=started,
        acknowledged=acked,
        worker_pid=place.get("pid"),
        small=small,
    )
    info["place"] = place
    return info


def _not_due(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    now = time.time()
    return [entry for entry in entries if entry.get("eta_s", 0) > now]


# a prefork child's cell: its pid, then three areas, each written only by that child
_PID = struct.Struct("=Q")
_BOX = struct.Struct("=QI")  # version (odd while written), length of what follows
ACTIVE_SIZE = 32 * 1024  # the running task: a little JSON, a newline, the message as it came
SCHEDULED_SIZE = 16 * 1024  # the parked ETA tasks, as JSON
NAME_SLOTS = 128  # task names counted (Celery's total), each a count and a name
_NAME = struct.Struct("=Q120s")
CELL_SIZE = _PID.size + ACTIVE_SIZE + SCHEDULED_SIZE + NAME_SLOTS * _NAME.size


class Cells:
    """One cell per prefork child, in memory shared across the fork."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._map = mmap.mmap(-1, max(1, count) * CELL_SIZE)

    def _base(self, index: int) -> int:
        return index * CELL_SIZE

    def _write_box(self, offset: int, size: int, payload: bytes) -> None:
        payload = payload[: size - _BOX.size]
        version = _PID.unpack_from(self._map, offset)[0]
        _PID.pack_into(self._map, offset, version + 1)
        self._map[offset + _BOX.size : offset + _BOX.size + len(payload)] = payload
        _BOX.pack_into(self._map, offset, version + 2, len(payload))

    def _read_box(self, offset: int) -> bytes | None:
        for _ in range(50):
            version, length = _BOX.unpack_from(self._map, offset)
            payload = self._map[offset + _BOX.size : offset + _BOX.size + length]
            if version % 2 == 0 and _PID.unpack_from(self._map, offset)[0] == version:
                return payload if length else None
        return None

    # the child's side
    def started_process(self, index: int) -> dict[str, tuple[int, int]]:
        """Note this child's pid; the names counted so far in the cell (a replaced child
        goes on counting): name -> (slot, count)."""
        _PID.pack_into(self._map, self._base(index), os.getpid())
        return self.counted(index)

    def counted(self, index: int) -> dict[str, tuple[int, int]]:
        counts = {}
        for slot in range(NAME_SLOTS):
            count, raw = _NAME.unpack_from(self._map, self._names(index) + slot * _NAME.size)
            name = raw.rstrip(b"\x00").decode("utf-8", "replace")
            if name:
                counts[name] = (slot, count)
        return counts

    def _names(self, index: int) -> int:
        return self._base(index) + _PID.size + ACTIVE_SIZE + SCHEDULED_SIZE

    def set_count(self, index: int, slot: int, name: str, count: int) -> None:
        _NAME.pack_into(
            self._map, self._names(index) + slot * _NAME.size, count, name.encode()[:120]
        )

    def set_active(self, index: int, meta: bytes, raw: bytes) -> None:
        self._write_box(self._base(index) + _PID.size, ACTIVE_SIZE, meta + b"\n" + raw)

    def set_scheduled(self, index: int, entries: list[dict[str, Any]]) -> None:
        payload = orjson.dumps(entries, default=repr)
        while len(payload) > SCHEDULED_SIZE - _BOX.size and entries:
            entries = entries[: len(entries) // 2]  # the earliest ones fit
            payload = orjson.dumps(entries, default=repr)
        self._write_box(self._base(index) + _PID.size + ACTIVE_SIZE, SCHEDULED_SIZE, payload)

    # the manager's side
    def read(self, index: int, hostname: str, running_id: str | None) -> dict[str, Any]:
        base = self._base(index)
        counts = {name: count for name, (_, count) in self.counted(index).items()}
        scheduled = self._read_box(base + _PID.size + ACTIVE_SIZE)
        record: dict[str, Any] = {
            "pid": _PID.unpack_from(self._map, base)[0] or None,
            "child_index": index,
            "active": [],
            "total": counts,
            "scheduled": _not_due(orjson.loads(scheduled)) if scheduled else [],
            "finished": [],
        }
        if running_id is not None:
            info = self._active_info(index, hostname, running_id)
            if info is not None:
                record["active"] = [info]
        return record

    def _active_info(self, index: int, hostname: str, task_id: str) -> dict[str, Any] | None:
        payload = self._read_box(self._base(index) + _PID.size)
        if payload is None:
            return None
        meta, _, raw = payload.partition(b"\n")
        try:
            queue, acked, place, started = orjson.loads(meta)
            message = parse_envelope(raw)
        except Exception:  # too big for the cell (cut short) or not JSON: say what is known
            return None
        if message.id != task_id:
            return None  # the cell has moved on (or not yet) from the task the table names
        small = len(raw) <= SMALL_MESSAGE
        return active_info(message, hostname, queue, small, acked, place, started)


class TaskBook:
    """The view: subscribe once, before any fork; read with :meth:`records`."""

    def __init__(self, hostname: str, child_cells: int = 0) -> None:
        self.hostname = hostname
        self.cells = Cells(child_cells) if child_cells else None
        self.record = Record()
        self._lock = threading.Lock()
        self._home_pid = os.getpid()
        self._index: int | None = None  # a prefork child's index, once known
        self._slots: dict[str, tuple[int, int]] = {}  # a child's counted names

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
        if os.getpid() == self._home_pid:
            return
        self.record = Record()  # a prefork child: a record of its own
        self._lock = threading.Lock()
        index = child_index()
        if self.cells is not None and index is not None and index < self.cells.count:
            self._index = index
            self._slots = self.cells.started_process(index)

    def on_started(self, ctx: ExecContext, job: Job, request: Any) -> None:
        message = job.message
        raw = job.delivery.raw
        place = _place_of(request)
        started = _started_at(request)
        if self._index is not None:
            self._child_started(message, job.delivery.queue, job.acked, place, started, raw)
            return
        small = len(raw) <= SMALL_MESSAGE
        with self._lock:
            record = self.record
            record.active[message.id] = (
                message,
                job.delivery.queue,
                small,
                job.acked,
                place,
                started,
            )
            record.total[message.task] += 1
            if record.scheduled:
                record.scheduled.pop(message.id, None)

    def _child_started(
        self,
        message: TaskMessage,
        queue: str,
        acked: bool,
        place: dict[str, Any],
        started: float,
        raw: bytes,
    ) -> None:
        cells, index = self.cells, self._index
        assert cells is not None and index is not None
        cells.set_active(index, orjson.dumps([queue, acked, place, started]), raw)
        name = message.task
        slot, count = self._slots.get(name) or (len(self._slots), 0)
        if slot < NAME_SLOTS:
            self._slots[name] = (slot, count + 1)
            cells.set_count(index, slot, name, count + 1)
        if self.record.scheduled.pop(message.id, None) is not None:
            cells.set_scheduled(index, list(self.record.scheduled.values()))

    def on_finished(self, ctx: ExecContext, job: Job, outcome: Any) -> None:
        if self._index is not None:
            return  # the pool's own table says the child is idle now
        with self._lock:
            self.record.active.pop(job.message.id, None)
            self.record.finished.append(job.message.id)

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
            if self._index is not None and self.cells is not None:
                entries = _not_due(list(self.record.scheduled.values()))
                self.record.scheduled = {e["request"]["id"]: e for e in entries}
                self.cells.set_scheduled(self._index, entries)

    # the reader (the process answering remote control)
    def records(self, running: dict[int, str | None] | None = None) -> list[dict[str, Any]]:
        """Every process's record. *running* (prefork): live child index -> the id of the
        task the pool's own table says it runs (None: idle); a slot with no live child
        keeps only its counts."""
        if self.cells is None:
            with self._lock:
                return [self.record.snapshot(self.hostname)]
        running = running or {}
        found = []
        for index in range(self.cells.count):
            record = self.cells.read(index, self.hostname, running.get(index))
            if index not in running:
                record["pid"], record["scheduled"] = None, []
            if record["total"] or index in running:
                found.append(record)
        return found


def scheduled_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """Celery's shape (without our due time in seconds)."""
    return {key: value for key, value in entry.items() if key != "eta_s"}
