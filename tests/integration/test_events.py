"""Events of real celeriac workers, read with celeriac's own receiver and ``celeriac events``.

Covers the task events for every outcome, switching task events at run time with the
``enable_events`` / ``disable_events`` remote controls (on prefork, whose children send
their own), events on the SQLite broker, and ``celeriac events --dump`` as a subprocess.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from celeriac import Celery
from celeriac.events import EventReceiver
from tests.support.workers import TESTS_DIR, WorkerProcess, start_celeriac_worker, subprocess_env

Event = dict[str, Any]
WAIT_S = 15.0


class Collector:
    """celeriac's EventReceiver in a thread, keeping every event."""

    def __init__(self, app: Celery) -> None:
        self.receiver = EventReceiver(app)
        self.events: list[Event] = []
        self._cond = threading.Condition()
        self._listening = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for event in self.receiver.events(timeout_s=None):
            self._listening.set()
            if self._stop:
                return
            if event is not None:
                with self._cond:
                    self.events.append(event)
                    self._cond.notify_all()

    def start(self) -> Collector:
        self._thread.start()
        assert self._listening.wait(10), "the receiver never started listening"
        return self

    def stop(self) -> None:
        self._stop = True
        self._thread.join(5)

    def wait_for(self, test: Callable[[Event], bool], timeout_s: float = WAIT_S) -> Event:
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

    def for_task(self, task_id: str) -> list[str]:
        with self._cond:
            return [e["type"] for e in self.events if e.get("uuid") == task_id]

    def next_heartbeat(self) -> Event:
        """A heartbeat sent after now: task events of what finished before have arrived
        by then (they are flushed within 50 ms; heartbeats come every 2 s)."""
        now = time.time()
        return self.wait_for(lambda e: e["type"] == "worker-heartbeat" and e["timestamp"] > now)


@pytest.fixture
def client(redis_url: str, backend_url: str) -> Iterator[Celery]:
    app = Celery("events_client", broker=redis_url, backend=backend_url)
    yield app
    app.close()


@pytest.fixture
def collector(client: Celery) -> Iterator[Collector]:
    reader = Collector(client).start()
    yield reader
    reader.stop()


def test_task_events_for_every_outcome(
    collector: Collector, client: Celery, worker_factory: Callable[..., WorkerProcess]
) -> None:
    worker_factory("event_tasks", "-P", "threads", "-c", "2", "-E", "-n", "outcomes@localhost")
    collector.of("worker-online")

    retried = client.send_task("ev.retry_once")
    assert retried.get(timeout=10) == "retried"
    collector.of("task-succeeded", retried.id)
    events = collector.for_task(retried.id)
    retry = collector.of("task-retried", retried.id)
    assert retry["exception"] == "KeyError('first run')"
    received = [
        e for e in collector.events if e["type"] == "task-received" and e["uuid"] == retried.id
    ]
    assert [e["retries"] for e in received] == [0, 1]
    assert events.count("task-started") == 2

    rejected = client.send_task("ev.reject")
    assert collector.of("task-rejected", rejected.id)["requeue"] is False

    unknown = client.send_task("ev.nope")
    failed = collector.of("task-failed", unknown.id)
    assert failed["exception"] == "NotRegistered('ev.nope')"

    gone = client.send_task("ev.add", (1, 2), expires=datetime.now(timezone.utc) - timedelta(1))
    revoked = collector.of("task-revoked", gone.id)
    assert revoked["expired"] is True and revoked["terminated"] is False

    thread_started = collector.of("task-started", retried.id)
    assert thread_started["pool"] == "threads"
    assert thread_started["thread_name"] != "MainThread"


def test_enable_and_disable_events_at_run_time(
    collector: Collector, client: Celery, worker_factory: Callable[..., WorkerProcess]
) -> None:
    node = "switch@localhost"
    worker = worker_factory("event_tasks", "-P", "prefork", "-c", "2", "-n", node)  # no -E
    collector.of("worker-online")

    quiet = client.send_task("ev.add", (1, 1))
    assert quiet.get(timeout=10) == 2
    collector.next_heartbeat()
    assert collector.for_task(quiet.id) == []
    # heartbeats count what the worker processed with task events off too, as Celery's do
    collector.wait_for(lambda e: e["type"] == "worker-heartbeat" and e["processed"] == 1)

    replies = client.control.broadcast("enable_events", reply=True, timeout=3)
    assert replies == [{node: {"ok": "task events enabled"}}]
    loud = [client.send_task("ev.add", (i, i)) for i in range(4)]
    assert [r.get(timeout=10) for r in loud] == [0, 2, 4, 6]
    for result in loud:
        collector.of("task-succeeded", result.id)
        assert collector.for_task(result.id)[:2] == ["task-received", "task-started"]
    # the children sent them, each on its own connection
    pids = {collector.of("task-succeeded", r.id)["pid"] for r in loud}
    assert pids <= {child.pid for child in worker.children()}
    beat = collector.wait_for(lambda e: e["type"] == "worker-heartbeat" and e["processed"] >= 5)
    assert beat["active"] == 0

    replies = client.control.broadcast("enable_events", reply=True, timeout=3)
    assert replies == [{node: {"ok": "task events already enabled"}}]
    replies = client.control.broadcast("disable_events", reply=True, timeout=3)
    assert replies == [{node: {"ok": "task events disabled"}}]
    quiet_again = client.send_task("ev.add", (5, 5))
    assert quiet_again.get(timeout=10) == 10
    collector.next_heartbeat()
    assert collector.for_task(quiet_again.id) == []


def test_events_on_the_sqlite_broker(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'broker.db'}"
    app = Celery("sqlite_events", broker=url, backend=f"sqlite:///{tmp_path / 'results.db'}")
    reader = Collector(app).start()
    worker = start_celeriac_worker(
        "event_tasks",
        url,
        "-P",
        "solo",
        "-E",
        "-n",
        "lite@localhost",
        backend_url=f"sqlite:///{tmp_path / 'results.db'}",
    )
    try:
        assert reader.of("worker-online")["hostname"] == "lite@localhost"
        result = app.send_task("ev.add", (2, 2))
        assert result.get(timeout=10) == 4
        assert reader.of("task-succeeded", result.id)["result"] == "4"
        worker.stop()
        assert reader.of("worker-offline")["pid"] == worker.pid
    finally:
        worker.stop()
        reader.stop()
        app.close()


def test_celeriac_events_dump_shows_a_real_worker(
    redis_url: str, client: Celery, worker_factory: Callable[..., WorkerProcess]
) -> None:
    fd, out_name = tempfile.mkstemp(prefix="events-dump-", suffix=".txt")
    with os.fdopen(fd, "wb") as out:
        dump = subprocess.Popen(
            [sys.executable, "-m", "celeriac", "-b", redis_url, "events", "--dump", "--json"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=subprocess_env(redis_url),
            cwd=str(TESTS_DIR / "support"),
        )
    out_path = Path(out_name)
    try:

        def lines() -> list[str]:
            return out_path.read_text().splitlines()

        deadline = time.monotonic() + WAIT_S
        while "-> celeriac events: capturing..." not in lines():
            assert dump.poll() is None and time.monotonic() < deadline, out_path.read_text()
            time.sleep(0.05)
        worker_factory("event_tasks", "-P", "solo", "-E", "-n", "dumped@localhost")
        result = client.send_task("ev.add", (3, 4))
        assert result.get(timeout=10) == 7

        def dumped() -> list[Event]:
            return [orjson.loads(line) for line in lines() if line.startswith("{")]

        while not any(
            e.get("uuid") == result.id and e["type"] == "task-succeeded" for e in dumped()
        ):
            assert dump.poll() is None and time.monotonic() < deadline, out_path.read_text()
            time.sleep(0.05)
        kinds = [e["type"] for e in dumped()]
        assert kinds[0] == "worker-online"
        assert [e["type"] for e in dumped() if e.get("uuid") == result.id] == [
            "task-received",
            "task-started",
            "task-succeeded",
        ]
        assert all(e["hostname"] == "dumped@localhost" for e in dumped())
    finally:
        if dump.poll() is None:
            os.kill(dump.pid, signal.SIGINT)
            try:
                dump.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(dump.pid, signal.SIGKILL)
                dump.wait(5)
        out_path.unlink()


def test_task_sent_events_from_a_client_that_asks_for_them(
    collector: Collector, redis_url: str, backend_url: str
) -> None:
    quiet = Celery("quiet_client", broker=redis_url, backend=backend_url)
    sender = Celery("sending_client", broker=redis_url, backend=backend_url)
    sender.conf.task_send_sent_event = True
    try:
        unseen = quiet.send_task("ev.add", (0, 0))
        sent = sender.send_task("ev.add", (1, 2), countdown=30)
        event = collector.of("task-sent", sent.id)
        assert event["name"] == "ev.add"
        assert event["args"] == "(1, 2)" and event["kwargs"] == "{}"
        assert event["queue"] == "celery" and event["routing_key"] == "celery"
        assert event["eta"] is not None and event["retries"] == 0
        assert event["hostname"].startswith(f"gen{os.getpid()}@")
        assert collector.for_task(unseen.id) == []  # its app did not ask
    finally:
        quiet.close()
        sender.close()


@pytest.mark.parametrize("pool", ["gevent", "eventlet", "asyncio"])
def test_task_events_on_green_and_asyncio_pools(
    pool: str, collector: Collector, client: Celery, worker_factory: Callable[..., WorkerProcess]
) -> None:
    worker = worker_factory("event_tasks", "-P", pool, "-c", "3", "-E", "-n", f"{pool}@localhost")
    result = client.send_task("ev.add", (2, 5))
    assert result.get(timeout=10) == 7
    assert collector.of("task-succeeded", result.id)["result"] == "7"
    started = collector.of("task-started", result.id)
    assert started["pool"] == pool and started["pid"] == worker.pid
    if pool in ("gevent", "eventlet"):
        assert isinstance(started["greenlet"], int)  # each task runs in a greenlet of its own


def test_terminated_task_is_reported_by_the_prefork_manager(
    collector: Collector, client: Celery, worker_factory: Callable[..., WorkerProcess]
) -> None:
    worker = worker_factory("core_tasks", "-P", "prefork", "-c", "1", "-E", "-n", "kill@localhost")
    running = client.send_task("core.sleep", (30,))
    started = collector.of("task-started", running.id)
    client.control.revoke(running.id, terminate=True, signal="SIGKILL")
    revoked = collector.of("task-revoked", running.id)
    assert revoked["terminated"] is True and revoked["signum"] == 9
    assert revoked["pid"] == worker.pid != started["pid"]  # the manager saw its child go


def test_events_command_says_when_the_broker_is_unreachable() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    done = subprocess.run(
        [sys.executable, "-m", "celeriac", "-b", f"redis://127.0.0.1:{port}/0", "events", "-d"],
        capture_output=True,
        text=True,
        timeout=30,
        env=subprocess_env(f"redis://127.0.0.1:{port}/0"),
    )
    assert done.returncode == 1
    assert f"cannot read events from redis://127.0.0.1:{port}/0" in done.stderr
    assert "check that the broker is running" in done.stderr
