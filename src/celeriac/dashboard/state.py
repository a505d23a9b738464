"""What the dashboard knows of the cluster, kept up to date on two daemon threads.

The events thread reads the ``celeryev`` events (workers' heartbeats, every task's life)
into task records and worker rows; the poll thread asks the workers for their ``tree`` and
``stats`` over the pidbox each second, reads queue lengths and dead-letter counts, and
saves changed task records to the history. Both survive a lost broker: the error is shown
and they try again until it comes back. ``version`` grows on every change; the live
stream tells the pages to redraw when it does.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import redis.exceptions
from prometheus_client import CollectorRegistry

from ..errors import BackendError, BrokerError, ConfigurationError
from ..events.monitor import FINISHED, TASK_STATES
from ..events.receiver import EventReceiver
from ..metrics.families import TaskMetrics
from ..urls import scrub, secrets_in
from .cluster_metrics import ClusterCollector
from .history import History, Record, history_for

if TYPE_CHECKING:
    from ..app import Celeriac

logger = logging.getLogger(__name__)

POLL_S = 1.0
DISCOVER_EVERY = 5  # polls between two tree queries that wait for unknown workers too
ENABLE_EVENTS_S = 10.0  # how often workers are asked to send task events
# what a lost broker or backend raises (anything else is a fault of the dashboard's own)
CONNECTION_ERRORS = (
    BrokerError,
    BackendError,
    OSError,
    sqlite3.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
RECONCILE_MAX = 500  # unfinished tasks checked against the backend per poll
PLACE_KEYS = ("pid", "pool", "child_index", "thread_name", "greenlet", "asyncio_task")


class DashboardState:
    def __init__(self, app: Celeriac, max_tasks: int | None = None) -> None:
        self.app = app
        self.max_tasks = int(max_tasks or app.conf.get("dashboard_max_tasks") or 10_000)
        self.lock = threading.RLock()
        self.tasks: OrderedDict[str, Record] = OrderedDict()
        self.workers: dict[str, dict[str, Any]] = {}
        self.trees: dict[str, dict[str, Any]] = {}
        self.stats: dict[str, dict[str, Any]] = {}
        self.queues: dict[str, dict[str, Any]] = {}
        self.known_queues: set[str] = {str(app.conf.task_default_queue)}
        self.broker_error: str | None = None
        self.events_error: str | None = None
        self.control_note: str | None = None
        self.events_note: str | None = None
        self.version = 0
        self.registry = CollectorRegistry()
        self.metrics = TaskMetrics(self.registry)
        self.registry.register(ClusterCollector(self))
        self._dirty: dict[str, Record] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._history: History | None = None
        self._secrets = secrets_in(app.broker_url) + secrets_in(app.backend_url)

    # life
    def start(self) -> None:
        for target, name in ((self._events_loop, "events"), (self._poll_loop, "poll")):
            thread = threading.Thread(target=target, name=f"dashboard-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        self.flush()

    def bump(self) -> None:
        with self.lock:
            self.version += 1

    def scrubbed(self, exc: BaseException) -> str:
        return scrub(f"{type(exc).__name__}: {exc}", self._secrets)

    # history
    def history(self) -> History:
        if self._history is None:
            self._history = history_for(self.app.backend)
            records = self._history.load(self.max_tasks)
            with self.lock:
                for record in records:
                    self.tasks[str(record["uuid"])] = record
        return self._history

    def flush(self) -> None:
        with self.lock:
            dirty, self._dirty = self._dirty, {}
        if dirty:
            try:
                self.history().save(dirty, self.max_tasks)
            except Exception:
                with self.lock:  # kept for the next try
                    self._dirty = {**dirty, **self._dirty}
                raise

    # events
    def feed(self, event: dict[str, Any]) -> None:
        kind = str(event.get("type", ""))
        with self.lock:
            if kind.startswith("worker-"):
                self._worker_event(kind, event)
            elif kind in TASK_STATES:
                self._task_event(kind, event)
            self.version += 1

    def _worker_event(self, kind: str, event: dict[str, Any]) -> None:
        hostname = str(event.get("hostname"))
        row = self.workers.setdefault(hostname, {"hostname": hostname})
        row.update(
            pid=event.get("pid", row.get("pid")),
            pool=event.get("pool", row.get("pool")),
            software=f"{event.get('sw_ident', '')} {event.get('sw_ver', '')}".strip(),
            active=int(event.get("active") or 0),
            processed=int(event.get("processed") or 0),
            loadavg=list(event.get("loadavg") or []),
            freq=float(event.get("freq") or 2.0),
            last_seen=float(event.get("local_received") or time.time()),
            offline=kind == "worker-offline",
        )

    def _task_event(self, kind: str, event: dict[str, Any]) -> None:
        uuid = str(event.get("uuid"))
        record = self.tasks.get(uuid)
        when = float(event.get("timestamp") or time.time())
        if record is None:
            record = {"uuid": uuid, "state": "PENDING", "first_seen": when, "retries": 0}
            self.tasks[uuid] = record
            while len(self.tasks) > self.max_tasks:
                self.tasks.popitem(last=False)
        state = TASK_STATES[kind]
        if not (record["state"] in FINISHED and state not in FINISHED):
            record["state"] = state
        for key in ("name", "args", "kwargs", "root_id", "parent_id", "queue", "eta"):
            if event.get(key) is not None:
                record[key] = event[key]
        if kind != "task-sent" and event.get("hostname"):
            record["worker"] = event["hostname"]
        record[kind.removeprefix("task-") + "_at"] = when
        self._task_details(kind, event, record)
        self._dirty[uuid] = record
        self._count(kind, event, record)

    def _task_details(self, kind: str, event: dict[str, Any], record: Record) -> None:
        if kind == "task-received":
            record["retries"] = int(event.get("retries") or 0)
        elif kind == "task-started":
            record["place"] = {k: event.get(k) for k in PLACE_KEYS if event.get(k) is not None}
        elif kind == "task-succeeded":
            record["result"] = event.get("result")
            record["runtime"] = event.get("runtime")
        elif kind in ("task-failed", "task-retried"):
            record["exception"] = event.get("exception")
            record["traceback"] = event.get("traceback")
        elif kind == "task-revoked":
            record["terminated"] = bool(event.get("terminated"))
            record["expired"] = bool(event.get("expired"))

    def _count(self, kind: str, event: dict[str, Any], record: Record) -> None:
        m = self.metrics
        labels = (
            str(record.get("name") or "unknown"),
            str(record.get("worker") or event.get("hostname") or ""),
            str(record.get("queue") or ""),
        )
        counters = {
            "task-sent": m.sent,
            "task-received": m.received,
            "task-started": m.started,
            "task-succeeded": m.succeeded,
            "task-retried": m.retried,
            "task-revoked": m.revoked,
            "task-rejected": m.rejected,
        }
        if kind == "task-failed":
            exc = str(event.get("exception") or "").split("(", 1)[0]
            m.failed.labels(labels[0], labels[1], exc, labels[2]).inc()
        elif kind in counters:
            counters[kind].labels(*labels).inc()
        if kind == "task-succeeded" and isinstance(event.get("runtime"), (int, float)):
            m.runtime.labels(*labels).observe(float(event["runtime"]))

    def _events_loop(self) -> None:
        while not self._stop.is_set():
            try:
                receiver = EventReceiver(self.app)
                for event in receiver.events(None):
                    if self._stop.is_set():
                        return
                    if self.events_error is not None:
                        self.events_error = None
                        self.bump()
                    if event is not None:
                        self.feed(event)
            except ConfigurationError as exc:  # this broker carries no events: say so once
                self.events_note = self.scrubbed(exc)
                self.bump()
                return
            except Exception as exc:
                first = self.events_error is None
                self.events_error = self.scrubbed(exc)
                self.bump()
                if first:
                    logger.warning(
                        "dashboard: events stopped (%s); trying again every second",
                        self.events_error,
                        exc_info=not isinstance(exc, CONNECTION_ERRORS),
                    )
                self._stop.wait(1.0)

    # polling
    def _poll_loop(self) -> None:
        tick = 0
        next_enable = 0.0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                if started >= next_enable:
                    self._enable_events()
                    next_enable = started + ENABLE_EVENTS_S
                self.poll(discover=tick % DISCOVER_EVERY == 0)
                self.flush()
                if self.broker_error is not None:
                    logger.info("dashboard: the broker answers again")
                self.broker_error = None
            except Exception as exc:
                self._poll_failed(exc)
            tick += 1
            self.bump()
            self._stop.wait(max(0.05, POLL_S - (time.monotonic() - started)))

    def _poll_failed(self, exc: Exception) -> None:
        """Shown on every page; logged once per outage (with the traceback when it is not
        a lost connection, which would be a fault of the dashboard's own)."""
        first = self.broker_error is None
        self.broker_error = self.scrubbed(exc)
        if first:
            logger.warning(
                "dashboard: a poll of the cluster failed (%s); retrying every second",
                self.broker_error,
                exc_info=not isinstance(exc, CONNECTION_ERRORS),
            )

    def has_remote_control(self) -> bool:
        from ..pidbox_amqp import is_amqp

        broker = self.app.broker
        return getattr(broker, "client", None) is not None or is_amqp(broker)

    def _enable_events(self) -> None:
        if self.has_remote_control():
            self.app.control.enable_events()

    def poll(self, discover: bool = True) -> None:
        """One round: trees and stats from the workers, then the queues."""
        if self.has_remote_control():
            self._poll_workers(discover)
        else:
            self.control_note = (
                "this broker has no remote control: the trees of workers on this machine are "
                "measured here (pids from their heartbeats), their tasks from their events"
            )
            self._measure_local()
        self._reconcile()
        self._read_groups()
        self._poll_queues()

    def _read_groups(self) -> None:
        """The group of each finished task, from its stored result (events do not carry it),
        so its group or chord can be drawn."""
        with self.lock:
            unread = [
                u
                for u, r in self.tasks.items()
                if r.get("state") in ("SUCCESS", "FAILURE") and "group" not in r
            ][-RECONCILE_MAX:]
        if not unread:
            return
        metas = self.app.backend.get_many(unread)
        with self.lock:
            for uuid in unread:
                record = self.tasks.get(uuid)
                if record is not None:
                    record["group"] = (metas.get(uuid) or {}).get("group_id")
                    self._dirty[uuid] = record

    def _reconcile(self) -> None:
        """Outcomes the events did not bring (a revoke stored by a worker for a task it had
        not started, events lost while the dashboard was away) read from the backend."""
        with self.lock:
            waiting = [u for u, r in self.tasks.items() if r.get("state") not in FINISHED]
        waiting = waiting[-RECONCILE_MAX:]
        if not waiting:
            return
        metas = self.app.backend.get_many(waiting)
        with self.lock:
            for uuid, meta in metas.items():
                record = self.tasks.get(uuid)
                status = str((meta or {}).get("status") or "")
                if record is None or status not in FINISHED or record["state"] in FINISHED:
                    continue
                record["state"] = status
                result = meta.get("result")
                if status == "SUCCESS":
                    record.setdefault("result", repr(result))
                elif isinstance(result, dict) and "exc_type" in result:
                    record["exception"] = f"{result['exc_type']}({result.get('exc_message')!r})"
                if meta.get("traceback"):
                    record.setdefault("traceback", meta["traceback"])
                self._dirty[uuid] = record

    def _measure_local(self) -> None:
        """Without a pidbox: each live worker of this host measured with psutil."""
        from .local_tree import measure_local

        now = time.time()
        with self.lock:
            rows = [dict(r) for r in self.workers.values() if not r.get("offline")]
            running = [dict(r) for r in self.tasks.values() if r.get("state") == "STARTED"]
        trees = {}
        for row in rows:
            tree = measure_local(row, running, now)
            if tree is not None:
                trees[row["hostname"]] = tree
        with self.lock:
            self.trees = trees

    def _poll_workers(self, discover: bool) -> None:
        now = time.time()
        expected = {name for name, row in self.workers.items() if not row.get("offline")} | set(
            self.trees
        )
        limit = None if discover or not expected else len(expected)
        inspect = self.app.control.inspect(timeout=1.0, limit=limit)
        trees = inspect.tree() or {}
        stats = (inspect.stats() or {}) if discover else self.stats
        with self.lock:
            fresh = {k: v for k, v in trees.items() if isinstance(v, dict) and "processes" in v}
            for tree in fresh.values():
                tree["received_at"] = now
                self.known_queues.update(str(q) for q in tree.get("queues") or [])
            if discover:
                self.trees = fresh
            else:
                self.trees.update(fresh)
            self.stats = dict(stats)
            for name in list(self.trees):
                row = self.workers.get(name)
                if row is not None and row.get("offline"):
                    del self.trees[name]

    def _poll_queues(self) -> None:
        from .queues import dead_count, lengths_by_priority

        broker = self.app.broker
        now = time.time()
        with self.lock:
            names = sorted(self.known_queues)
            consumers: dict[str, list[str]] = {}
            for host, tree in self.trees.items():
                for queue in tree.get("queues") or []:
                    consumers.setdefault(str(queue), []).append(host)
        found: dict[str, dict[str, Any]] = {}
        for name in names:
            lengths = lengths_by_priority(broker, name)
            total = sum(lengths.values())
            before = self.queues.get(name)
            rate = None
            if before is not None and now > before["at"]:
                rate = (total - before["total"]) / (now - before["at"])
            found[name] = {
                "name": name,
                "lengths": lengths,
                "total": total,
                "consumers": sorted(consumers.get(name, [])),
                "rate": rate,
                "dead": dead_count(broker, name),
                "at": now,
            }
        with self.lock:
            self.queues = found

    # reading
    def task(self, task_id: str) -> Record | None:
        with self.lock:
            record = self.tasks.get(task_id)
            return dict(record) if record is not None else None

    def search(self, query: str = "", state: str = "", limit: int = 200) -> list[Record]:
        """The newest tasks first, those whose name, id, worker or args hold *query*."""
        needle = query.strip().lower()
        found: list[Record] = []
        with self.lock:
            for record in reversed(self.tasks.values()):
                if state and record.get("state") != state:
                    continue
                if needle and needle not in _haystack(record):
                    continue
                found.append(dict(record))
                if len(found) >= limit:
                    break
        return found

    def family(self, record: Record) -> list[Record]:
        """Every remembered task of *record*'s workflow: its chain (same root, by parent),
        its group (same group id) and what those led to, oldest first."""
        roots = {record.get("root_id") or record["uuid"]}
        groups = {record["group"]} if record.get("group") else set()
        found: dict[str, Record] = {}
        with self.lock:
            for _ in range(3):  # a chord: the header's group, then its body, then the body's
                before = len(found)
                for r in self.tasks.values():
                    root = r.get("root_id") or r["uuid"]
                    in_group = bool(r.get("group")) and r["group"] in groups
                    if root in roots or in_group or r.get("parent_id") in found:
                        found[r["uuid"]] = dict(r)
                        roots.add(root)
                groups |= {str(r["group"]) for r in found.values() if r.get("group")}
                if len(found) == before:
                    break
        return sorted(found.values(), key=lambda r: float(r.get("first_seen") or 0))

    def alive_workers(self, now: float | None = None) -> list[dict[str, Any]]:
        now = time.time() if now is None else now
        with self.lock:
            names: Iterable[str] = sorted(set(self.workers) | set(self.trees))
            rows = []
            for name in names:
                row = dict(self.workers.get(name) or {"hostname": name})
                seen = float(row.get("last_seen") or 0)
                row["alive"] = name in self.trees or (
                    not row.get("offline") and now - seen <= float(row.get("freq") or 2) + 2
                )
                row["tree"] = self.trees.get(name)
                row["stats"] = self.stats.get(name) or {}
                rows.append(row)
        return rows


def _haystack(record: Record) -> str:
    parts = (record.get(k) for k in ("uuid", "name", "worker", "args", "kwargs", "state"))
    return " ".join(str(p) for p in parts if p is not None).lower()
