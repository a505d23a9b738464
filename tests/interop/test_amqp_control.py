"""Remote control over RabbitMQ (the celery.pidbox fanout exchange), both ways: Celery's
``celery inspect ping`` answered by a celeriac worker, celeriac's ``app.control`` answered by
a Celery worker, and revokes from either client honoured by a celeriac prefork worker."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import celery
import pytest

import celeriac
from tests.interop.peers import CELERY_WORKER_FLAGS, release_celery_results
from tests.support.rabbitmq import RabbitNode
from tests.support.workers import (
    TESTS_DIR,
    WorkerProcess,
    start_celeriac_worker,
    start_celery_worker,
    subprocess_env,
)

pytest_plugins = ["tests.support.rabbitmq_fixtures"]

Factory = Callable[..., WorkerProcess]
PING = ("--timeout", "5", "--json")


@pytest.fixture
def workers(amqp_url: str, backend_url: str) -> Iterator[Factory]:
    started: list[WorkerProcess] = []

    def start(kind: str, *args: str) -> WorkerProcess:
        if kind == "celery":
            worker = start_celery_worker(
                "celery_amqp_tasks", amqp_url, *args, *CELERY_WORKER_FLAGS, backend_url=backend_url
            )
        else:
            worker = start_celeriac_worker("amqp_tasks", amqp_url, *args, backend_url=backend_url)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if "celery_amqp_tasks" in worker.process.args:  # type: ignore[operator]
            worker.signal(signal.SIGKILL)  # a Celery worker's stop on AMQP takes ~10 s
        worker.stop()


def test_celery_inspect_ping_is_answered_by_a_celeriac_worker(
    workers: Factory, amqp_url: str, backend_url: str
) -> None:
    workers("celeriac", "-P", "prefork", "-c", "2", "-n", "amqp-ping@%h")
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "celery_control_cli", "inspect", "ping", *PING],
        env=subprocess_env(amqp_url, backend_url),
        cwd=str(TESTS_DIR / "support"),
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    answers = json.loads(done.stdout.decode().strip().splitlines()[-1])
    (name,) = [n for n in answers if n.startswith("amqp-ping@")]
    assert answers[name] == {"ok": "pong"}


def test_celeriac_control_reaches_a_celery_worker_and_a_celeriac_worker(
    workers: Factory, amqp_url: str, backend_url: str
) -> None:
    workers("celery", "-P", "solo", "-n", "theirs@%h")
    workers("celeriac", "-P", "solo", "-n", "ours@%h")
    app = celeriac.Celery("control_client", broker=amqp_url, backend=backend_url)
    try:
        deadline = time.monotonic() + 20
        names: set[str] = set()
        while time.monotonic() < deadline and len(names) < 2:
            replies: list[dict[str, Any]] = app.control.ping(timeout=1.0)
            names = {name.split("@")[0] for reply in replies for name in reply}
        assert names == {"theirs", "ours"}
    finally:
        app.close()


def wait_consumers(node: RabbitNode, queue: str, count: int) -> None:
    deadline = time.monotonic() + 20
    while (
        node.ctl("list_consumers", "queue_name", "--no-table-headers").split().count(queue) < count
    ):
        assert time.monotonic() < deadline, f"fewer than {count} consumers on {queue}"
        time.sleep(0.2)  # polling RabbitMQ's view, bounded by the deadline


def test_revokes_from_either_client_reach_a_celeriac_prefork_worker(
    workers: Factory, amqp_url: str, backend_url: str, rabbit_node: RabbitNode
) -> None:
    worker = workers("celeriac", "-P", "prefork", "-c", "2", "-l", "info")
    wait_consumers(rabbit_node, "celery", 2)  # both children listen (and hear revokes)
    ours = celeriac.Celery("revoke_client", broker=amqp_url, backend=backend_url)
    theirs = celery.Celery("revoke_client", broker=amqp_url, backend=backend_url)
    theirs.conf.broker_transport_options = {"confirm_publish": True}  # see amqp_task_defs
    try:
        first = ours.send_task("amqp.add", (1, 1), countdown=2.0)
        second = theirs.send_task("amqp.add", (2, 2), countdown=2.0)
        kept = ours.send_task("amqp.add", (3, 3), countdown=3.0)  # due after the others
        ours.control.revoke(first.id)
        theirs.control.revoke(second.id)
        assert kept.get(timeout=30) == 6
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and {first.state, second.state} != {"REVOKED"}:
            time.sleep(0.1)  # polling the stored states, bounded by the deadline
        assert first.state == "REVOKED"
        assert theirs.AsyncResult(second.id).state == "REVOKED"
        log = worker.log()
        assert f"amqp.add[{kept.id}] succeeded" in log
        for revoked in (first, second):  # dropped by the child holding it, never run
            assert f"amqp.add[{revoked.id}] succeeded" not in log
    finally:
        release_celery_results(theirs)
        theirs.close()
        ours.close()


def test_events_over_rabbitmq_both_ways(workers: Factory, amqp_url: str, backend_url: str) -> None:
    """Celery's event Receiver reads a celeriac -E worker on RabbitMQ (the celeryev topic
    exchange), and celeriac's EventReceiver reads a Celery -E worker."""
    from celeriac.events import EventReceiver

    theirs = celery.Celery("events_reader", broker=amqp_url, set_as_current=False)
    seen: list[dict[str, Any]] = []
    stop = threading.Event()

    def capture() -> None:
        with theirs.connection_for_read() as conn:
            receiver = theirs.events.Receiver(conn, handlers={"*": seen.append})
            while not stop.is_set():
                try:
                    receiver.capture(limit=None, timeout=0.5, wakeup=False)
                except TimeoutError:
                    continue

    reader = threading.Thread(target=capture, daemon=True)
    reader.start()
    ours = celeriac.Celery("events_client", broker=amqp_url, backend=backend_url)
    try:
        our_worker = workers("celeriac", "-P", "solo", "-E", "-n", "ev-ours@%h")
        deadline = time.monotonic() + 20
        result = None
        while not any(e.get("type") == "task-succeeded" for e in seen):
            assert time.monotonic() < deadline, [e.get("type") for e in seen]
            if result is None and any(e.get("hostname", "").startswith("ev-ours@") for e in seen):
                result = ours.send_task("amqp.add", (2, 3))  # the reader is listening now
            time.sleep(0.05)  # polling what the reader thread collected, bounded
        assert result is not None and result.get(timeout=10) == 5
        done = next(e for e in seen if e.get("type") == "task-succeeded")
        assert done["uuid"] == result.id and done["hostname"].startswith("ev-ours@")

        our_worker.stop()  # the next task is the Celery worker's
        workers("celery", "-P", "solo", "-E", "-n", "ev-theirs@%h")
        sent = None
        for event in EventReceiver(ours).events(timeout_s=30):
            if sent is None:  # the reader's queue is bound once the first tick comes
                sent = ours.send_task("amqp.add", (20, 3))
            if event is None:
                continue
            if event.get("type") == "task-succeeded" and "ev-theirs@" in event.get("hostname"):
                assert event["uuid"] == sent.id
                break
        else:
            raise AssertionError("no task-succeeded event from the Celery worker")
    finally:
        stop.set()
        reader.join(5)
        theirs.close()
        ours.close()
