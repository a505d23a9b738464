"""Celery's own event receiver and event state read a celeriac worker's events.

A real ``celery`` app on the same Redis runs ``app.events.Receiver`` (kombu's fanout
subscription, ``PSUBSCRIBE /0.celeryev/*``) in a thread and feeds ``app.events.State``, as
``celery events`` and Flower do, while a celeriac worker with ``-E`` runs tasks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import celery
import pytest
import redis

from celeriac.events import EventReceiver
from celeriac.events.monitor import ClusterMonitor
from tests.support.workers import WorkerProcess

Event = dict[str, Any]


class CeleryEvents:
    """Celery's Receiver in a thread: every event, and Celery's State fed with them."""

    def __init__(self, app: celery.Celery) -> None:
        self.app = app
        self.events: list[Event] = []
        self.state = app.events.State()
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _on_event(self, event: Event) -> None:
        with self._cond:
            self.state.event(event)
            self.events.append(event)
            self._cond.notify_all()

    def _run(self) -> None:
        with self.app.connection_for_read() as conn:
            receiver = self.app.events.Receiver(conn, handlers={"*": self._on_event})
            while not self._stop:
                try:
                    receiver.capture(limit=None, timeout=0.5, wakeup=False)
                except TimeoutError:
                    continue

    def start(self, redis_url: str) -> None:
        self._thread.start()
        client = redis.Redis.from_url(redis_url)
        deadline = time.monotonic() + 10
        while int(client.pubsub_numpat()) < 1:  # subscribed
            assert time.monotonic() < deadline, "Celery's receiver never subscribed"
            time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        self._stop = True
        self._thread.join(5)

    def wait_for(self, test: Callable[[Event], bool], timeout_s: float = 15.0) -> Event:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for event in self.events:
                    if test(event):
                        return event
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no such event; got {[e['type'] for e in self.events]}"
                self._cond.wait(remaining)

    def of(self, event_type: str, task_id: str | None = None) -> Event:
        return self.wait_for(
            lambda e: e["type"] == event_type and (task_id is None or e.get("uuid") == task_id)
        )


@pytest.fixture
def celery_events(redis_url: str) -> Iterator[CeleryEvents]:
    app = celery.Celery("events_reader", broker=redis_url, set_as_current=False)
    reader = CeleryEvents(app)
    reader.start(redis_url)
    yield reader
    reader.stop()
    app.close()


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_celery_receiver_reads_a_celeriac_worker(
    pool: str,
    celery_events: CeleryEvents,
    celery_client: celery.Celery,
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    node = f"ev-{pool}@localhost"
    worker = worker_factory("core_tasks", "-P", pool, "-c", "2", "-E", "-n", node)

    online = celery_events.of("worker-online")
    assert online["hostname"] == node
    assert online["pid"] == worker.pid
    assert online["freq"] == 2.0
    assert len(online["loadavg"]) == 3
    assert {"sw_ident", "sw_ver", "sw_sys", "active", "processed", "clock"} <= set(online)

    ok = celery_client.send_task("core.add", (2, 3))
    bad = celery_client.send_task("core.fail_builtin", ("boom",))
    assert ok.get(timeout=10) == 5
    with pytest.raises(ValueError):
        bad.get(timeout=10)

    received = celery_events.of("task-received", ok.id)
    assert received["name"] == "core.add"
    assert received["args"] == "(2, 3)" and received["kwargs"] == "{}"
    assert received["retries"] == 0 and received["root_id"] == ok.id
    started = celery_events.of("task-started", ok.id)
    succeeded = celery_events.of("task-succeeded", ok.id)
    assert succeeded["result"] == "5"
    assert isinstance(succeeded["runtime"], float)
    failed = celery_events.of("task-failed", bad.id)
    assert failed["exception"] == "ValueError('boom')"
    assert "ValueError: boom" in failed["traceback"]
    assert received["hostname"] == started["hostname"] == node

    # where it ran: the task's own process, told in extra fields
    if pool == "prefork":
        child_pids = {child.pid for child in worker.children()}
        assert started["pid"] in child_pids and started["ppid"] == worker.pid
        assert started["child_index"] in (0, 1)
    else:
        assert started["pid"] == worker.pid and started["child_index"] is None
    assert started["pool"] == pool

    # a heartbeat (every 2 s) that counts what was processed
    beat = celery_events.wait_for(
        lambda e: e["type"] == "worker-heartbeat" and e["processed"] >= 2, timeout_s=10
    )
    assert beat["active"] == 0 and beat["pid"] == worker.pid

    # Celery's State made sense of it all
    state = celery_events.state
    assert state.tasks[ok.id].state == "SUCCESS"
    assert state.tasks[ok.id].result == "5"
    assert state.tasks[bad.id].state == "FAILURE"
    assert state.workers[node].alive
    assert state.tasks[ok.id].worker.hostname == node

    worker.stop()
    offline = celery_events.of("worker-offline")
    assert offline["hostname"] == node


def test_celeriac_receiver_reads_a_celery_worker(
    celeriac_client: Any, celery_worker_factory: Callable[..., WorkerProcess]
) -> None:
    """The other way round: celeriac's EventReceiver (what `celeriac events` uses) and its
    monitor make sense of a real Celery worker's events (task.multi batches included)."""
    monitor = ClusterMonitor()
    seen: list[Event] = []
    listening = threading.Event()
    stop = threading.Event()

    def read() -> None:
        for event in EventReceiver(celeriac_client).events(timeout_s=60):
            listening.set()
            if stop.is_set():
                return
            if event is not None:
                seen.append(event)
                monitor.feed(event)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert listening.wait(10)
    try:
        celery_worker_factory(
            "celery_core_tasks",
            "-P",
            "solo",
            "-E",
            "-n",
            "real@localhost",
            "-l",
            "info",
            "--without-mingle",
            "--without-gossip",
        )
        result = celeriac_client.send_task("core.add", (4, 4))
        assert result.get(timeout=10) == 8
        deadline = time.monotonic() + 15
        while monitor.tasks.get(result.id) is None or monitor.tasks[result.id].state != "SUCCESS":
            assert time.monotonic() < deadline, [e["type"] for e in seen]
            time.sleep(0.05)
    finally:
        stop.set()
        reader.join(5)
    task = monitor.tasks[result.id]
    assert task.name == "core.add" and task.result == "8" and task.worker == "real@localhost"
    worker = monitor.workers["real@localhost"]
    assert worker.software.startswith("py-celery")
    assert worker.alive(time.time())
