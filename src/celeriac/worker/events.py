"""Celery's monitoring events, as a view of the task lifecycle (``celeriac.lifecycle``).

The worker always sends ``worker-online``, a ``worker-heartbeat`` every 2 s and
``worker-offline``, as Celery does. Task events (``task-received``, ``-started``,
``-succeeded``, ``-failed``, ``-retried``, ``-revoked``, ``-rejected``) are sent with ``-E`` /
``worker_send_task_events``, or after an ``enable_events`` remote control; their hooks are
subscribed only then, so a worker without them pays nothing per task.

Each process that runs tasks sends its own task events on its own connection: the solo,
threads and green pools' process, and every prefork child. They are batched (see
``celeriac.events.dispatcher``). The prefork manager and its children share a small table
(made before the first fork) holding the task-events switch and each process's active and
processed counts, which the manager's heartbeats report.

Besides Celery's fields, task-started events say where the task ran: ``ppid``,
``thread_id``, ``thread_name``, ``greenlet``, ``asyncio_task``, ``child_index`` and ``pool``
(``pid`` is Celery's own). Celery's consumers ignore them.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from multiprocessing.sharedctypes import RawArray
from typing import TYPE_CHECKING, Any

from .. import lifecycle, states
from ..errors import ConfigurationError
from ..events import wire
from ..events.dispatcher import EventDispatcher
from ..events.transport import transport_for
from .log_lines import short_repr
from .place import child_index

if TYPE_CHECKING:
    from ..brokers.base import Delivery
    from ..lifecycle import Terminated
    from ..protocol import TaskMessage
    from .execute import ExecContext, Job, Outcome
    from .runtime import WorkerRuntime

logger = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 2.0  # Celery's default (its event_heartbeat... setting is fixed at 2)
PLACE_FIELDS = ("ppid", "thread_id", "thread_name", "greenlet", "asyncio_task", "child_index")
SWITCH_WAIT_S = 1.5  # longest an enable/disable_events reply waits for prefork's children
_MAX_SLOTS = 1024  # processes a worker may have at once: the main one and prefork children
_PLAIN = frozenset({int, float, bool})  # results whose repr is short and cheap


class SharedCounters:
    """The task-events switch and each process's counts, shared across prefork's forks.

    Cell 0 is the switch; then three cells per process: active, processed, and the switch
    it follows now plus one (0: no process in the slot). Slot 0 is the process that started
    the worker, slot i + 1 prefork child i. A process counts in plain Python (``next()`` on
    an ``itertools.count`` is atomic, so the threads pools need no lock) and copies its
    counts to its own cells now and then (``publish``)."""

    def __init__(self, slots: int) -> None:
        self.slots = max(1, min(slots, _MAX_SLOTS))
        self._cells: Any = RawArray("q", 1 + 3 * self.slots)
        self.take_slot(None)

    @property
    def task_events(self) -> bool:
        return bool(self._cells[0])

    @task_events.setter
    def task_events(self, on: bool) -> None:
        self._cells[0] = 1 if on else 0

    def take_slot(self, child_index: int | None) -> None:
        """Use the slot of this process (a prefork child: its index's), keeping the count of
        what an earlier child in the same slot processed."""
        self.slot = 0 if child_index is None else min(child_index + 1, self.slots - 1)
        self._received_count = itertools.count(1)
        self._finished_count = itertools.count(1)
        self.received = self.finished = 0
        self._processed_before = int(self._cells[2 + 3 * self.slot])
        self.publish()

    def following(self, switch: bool | None) -> None:
        """Say which switch this process follows now (None: it is gone)."""
        self._cells[3 + 3 * self.slot] = 0 if switch is None else int(switch) + 1

    def all_follow(self, switch: bool) -> bool:
        """Whether every process in the table follows *switch* (or has none to follow)."""
        cells = self._cells
        return all(cells[3 + 3 * i] in (0, int(switch) + 1) for i in range(self.slots))

    def task_received(self) -> None:
        self.received = next(self._received_count)

    def task_finished(self) -> None:
        self.finished = next(self._finished_count)

    def publish(self) -> None:
        base = 1 + 3 * self.slot
        self._cells[base] = max(0, self.received - self.finished)
        self._cells[base + 1] = self._processed_before + self.finished

    def totals(self) -> tuple[int, int]:
        self.publish()
        cells = self._cells
        active = sum(cells[1 + 3 * i] for i in range(self.slots))
        processed = sum(cells[2 + 3 * i] for i in range(self.slots))
        return active, processed


class WorkerEvents:
    """One worker's events; every process of the worker holds (a forked copy of) it."""

    def __init__(self, runtime: WorkerRuntime, task_events: bool) -> None:
        self.runtime = runtime
        self.pool = runtime.pool_name
        slots = 1  # the process that started the worker; prefork's children follow
        if self.pool == "prefork":  # every child the pool may have, pool_grow's included
            from .pools.prefork import slot_capacity

            slots += slot_capacity(runtime)
        self.counters = SharedCounters(slots)
        self.counters.task_events = task_events
        self.dispatcher = EventDispatcher(runtime.app, runtime.nodename)
        self.main_pid = os.getpid()
        self._slot_known = False
        self._next_heartbeat = 0.0
        self._subscribed = False

    # switching task events
    @property
    def task_events(self) -> bool:
        return self.counters.task_events

    def enable(self) -> bool:
        """Send task events from now on (every process); False when they already were."""
        return self._switch(True)

    def disable(self) -> bool:
        return self._switch(False)

    def _switch(self, on: bool) -> bool:
        """Flip the switch and wait (a little) until prefork's children follow it, so the
        tasks they start once the reply is sent are the ones that see the change."""
        was = self.counters.task_events
        self.counters.task_events = on
        self.follow_switch()
        deadline = time.monotonic() + SWITCH_WAIT_S
        while not self.counters.all_follow(on) and time.monotonic() < deadline:
            time.sleep(0.01)
        return was != on

    def follow_switch(self) -> None:
        """Subscribe the task hooks of this process exactly while task events are on."""
        on = self.counters.task_events
        self.counters.following(on)
        if on == self._subscribed:
            return
        lifecycle.subscribe_all(self._task_hooks(), on)
        self._subscribed = on

    def _tick(self) -> None:
        try:
            self.counters.publish()
            self.follow_switch()
        except Exception:  # the flusher thread must live on
            logger.exception("events: could not follow the task-events switch")

    def _task_hooks(self) -> list[tuple[lifecycle.Point, Any]]:
        return [
            (lifecycle.task_received, self.on_received),
            (lifecycle.task_started, self.on_started),
            (lifecycle.task_succeeded, self.on_succeeded),
            (lifecycle.task_failed, self.on_failed),
            (lifecycle.task_retried, self.on_retried),
            (lifecycle.task_revoked, self.on_revoked),
            (lifecycle.task_unknown, self.on_unknown),
            (lifecycle.task_finished, self.on_finished),
        ]

    def _worker_hooks(self) -> list[tuple[lifecycle.Point, Any]]:
        return [
            (lifecycle.worker_ready, self.on_ready),
            (lifecycle.worker_heartbeat, self.on_heartbeat),
            (lifecycle.worker_stopped, self.on_stopped),
            (lifecycle.worker_process_started, self.on_process_started),
            (lifecycle.worker_process_stopping, self.on_process_stopping),
            (lifecycle.task_received, self.count_received),
            (lifecycle.task_finished, self.count_finished),
        ]

    def install(self) -> None:
        lifecycle.subscribe_all(self._worker_hooks())
        self.dispatcher.on_tick = self._tick
        self.follow_switch()

    def uninstall(self) -> None:
        lifecycle.subscribe_all(self._worker_hooks() + self._task_hooks(), on=False)
        self._subscribed = False
        self.dispatcher.close()

    # the worker
    def _worker_fields(self) -> dict[str, Any]:
        active, processed = self.counters.totals()
        try:
            loadavg = [round(value, 2) for value in os.getloadavg()]
        except OSError:
            loadavg = [0.0, 0.0, 0.0]
        return {
            "freq": HEARTBEAT_INTERVAL_S,
            "active": active,
            "processed": processed,
            "loadavg": loadavg,
            "pool": self.pool,
            **wire.SOFTWARE_INFO,
        }

    def on_ready(self, worker: Any) -> None:
        self.dispatcher.send("worker-online", **self._worker_fields())
        self._next_heartbeat = time.monotonic() + HEARTBEAT_INTERVAL_S

    def on_heartbeat(self, liveness: Any) -> None:
        if os.getpid() != self.main_pid:
            return
        now = time.monotonic()
        if now + 0.1 < self._next_heartbeat:  # the liveness beat is faster than Celery's
            return
        self._next_heartbeat = now + HEARTBEAT_INTERVAL_S
        self.dispatcher.send("worker-heartbeat", **self._worker_fields())

    def on_stopped(self, worker: Any) -> None:
        self.dispatcher.flush()
        self.dispatcher.send("worker-offline", **self._worker_fields())
        self.uninstall()

    def on_process_started(self, hostname: str) -> None:
        if os.getpid() == self.main_pid:
            return
        # a prefork child: its own connection, pid, clock and flusher thread
        self.dispatcher.after_fork()
        index = child_index()
        self.counters.take_slot(index)
        self._slot_known = index is not None
        self.follow_switch()
        self.dispatcher.start()

    def on_process_stopping(self, hostname: str, pid: int, exitcode: int) -> None:
        self.counters.following(None)
        self.dispatcher.close()

    # one task
    def _buffer(self, event_type: str, fields: dict[str, Any]) -> None:
        self.dispatcher.buffer(event_type, fields)

    def _place(self, place: dict[str, Any] | None) -> dict[str, Any]:
        if not place:
            return {"pool": self.pool}
        fields = {name: place.get(name) for name in PLACE_FIELDS}
        fields["pool"] = self.pool
        return fields

    # counted whether task events are on or not: heartbeats report them always, as Celery's
    def count_received(self, ctx: ExecContext, job: Job) -> None:
        if not self._slot_known:
            self.counters.take_slot(ctx.place_base.get("child_index"))
            self._slot_known = True
        self.counters.task_received()

    def count_finished(self, ctx: ExecContext, job: Job, outcome: Outcome) -> None:
        self.counters.task_finished()

    def on_received(self, ctx: ExecContext, job: Job) -> None:
        message = job.message
        headers = message.headers
        self._buffer(
            "task-received",
            {
                "uuid": message.id,
                "name": message.task,
                "args": headers.get("argsrepr") or short_repr(message.args),
                "kwargs": headers.get("kwargsrepr") or short_repr(message.kwargs),
                "root_id": headers.get("root_id"),
                "parent_id": headers.get("parent_id"),
                "retries": message.retries,
                "eta": headers.get("eta"),
                "expires": headers.get("expires"),
            },
        )

    def on_started(self, ctx: ExecContext, job: Job, request: Any) -> None:
        fields = self._place(getattr(request, "place", None))
        fields["uuid"] = job.message.id
        self._buffer("task-started", fields)

    def on_succeeded(self, ctx: ExecContext, job: Job, outcome: Outcome) -> None:
        value = outcome.value
        if value is None or type(value) in _PLAIN:  # most results: no reprlib needed
            text = repr(value)
        else:
            text = short_repr(value, getattr(job.task, "resultrepr_maxsize", 1024))
        self.dispatcher.buffer(
            "task-succeeded",
            {"uuid": job.message.id, "result": text, "runtime": outcome.runtime_s},
        )

    def on_failed(self, ctx: ExecContext, job: Job, outcome: Outcome) -> None:
        fields = {
            "uuid": job.message.id,
            "exception": short_repr(outcome.exc),
            "traceback": outcome.traceback or "",
        }
        self.dispatcher.buffer("task-failed", fields)

    def on_retried(self, ctx: ExecContext, job: Job, outcome: Outcome) -> None:
        retry = outcome.exc
        reason = getattr(retry, "exc", None) or retry
        self._buffer(
            "task-retried",
            {
                "uuid": job.message.id,
                "exception": short_repr(reason),
                "traceback": outcome.traceback or "",
            },
        )

    def on_revoked(
        self,
        ctx: ExecContext | None,
        job: Job | Terminated,
        terminated: bool,
        signum: int | None,
        expired: bool,
    ) -> None:
        task_id = job.message.id if hasattr(job, "message") else job.id
        self._buffer(
            "task-revoked",
            {"uuid": task_id, "terminated": terminated, "signum": signum, "expired": expired},
        )

    def on_unknown(
        self, ctx: ExecContext, delivery: Delivery, message: TaskMessage, exc: Exception
    ) -> None:
        self._buffer(
            "task-failed",
            {
                "uuid": message.id,
                "name": message.task,
                "exception": f"NotRegistered({message.task!r})",
            },
        )

    def on_finished(self, ctx: ExecContext, job: Job, outcome: Outcome) -> None:
        if outcome.state == states.REJECTED:
            requeue = bool(getattr(outcome.exc, "requeue", False))
            self._buffer("task-rejected", {"uuid": job.message.id, "requeue": requeue})


_current: WorkerEvents | None = None


def install(runtime: WorkerRuntime, task_events: bool) -> WorkerEvents | None:
    """Start this worker's events (called once by the Worker, before its pool starts);
    None when its broker carries no events (the in-memory one)."""
    global _current
    if _current is not None:
        _current.uninstall()
        _current = None
    try:
        transport_for(runtime.app)
    except ConfigurationError as exc:
        if task_events:
            logger.warning("task events are not sent: %s", exc)
        return None
    _current = WorkerEvents(runtime, task_events)
    _current.install()
    return _current


def current() -> WorkerEvents | None:
    """The events of the worker running in this process (the control commands use it)."""
    return _current
