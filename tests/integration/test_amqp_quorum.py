"""RabbitMQ quorum queues with celeriac alone: a poison message is capped at
task_max_redeliveries and dead-lettered where ``celeriac dead`` finds and requeues it; a
RabbitMQ delivery-limit policy's dead letters read the same; a countdown task waits in
RabbitMQ's delayed delivery topology, not in the worker, so a worker SIGKILL loses nothing."""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import amqp
import pytest
import redis

from celeriac import Celery, states
from celeriac.brokers import amqp_delayed
from celeriac.errors import WorkerLostError
from tests.support.rabbitmq import RabbitNode
from tests.support.rabbitmq_quorum import forget, ready_count
from tests.support.workers import WorkerProcess, start_celeriac_worker, subprocess_env

pytest_plugins = ["tests.support.rabbitmq_fixtures"]
pytestmark = pytest.mark.timeout(120)

SUPPORT = str(Path(__file__).resolve().parent.parent / "support")
if SUPPORT not in sys.path:
    sys.path.insert(0, SUPPORT)

from amqp_quorum_defs import configure, define_tasks  # noqa: E402

QUEUE = "quorum-cap"
WAIT_S = 30.0


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)  # polling broker state with a deadline, not a synchronising sleep


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {"TEST_QUEUE": QUEUE, "TEST_MAX_REDELIVERIES": "2", "TEST_EXCHANGE_TYPE": "topic"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def client(amqp_url: str, backend_url: str, rabbit_node: RabbitNode, env: Any) -> Iterator[Any]:
    forget(rabbit_node, QUEUE)
    app = Celery("quorum_client", broker=amqp_url, backend=backend_url)
    configure(app)
    yield app, define_tasks(app, "client")
    app.close()
    forget(rabbit_node, QUEUE)


@pytest.fixture
def workers(amqp_url: str, backend_url: str, env: dict[str, str]) -> Iterator[Any]:
    started: list[WorkerProcess] = []

    def start(*args: str) -> WorkerProcess:
        worker = start_celeriac_worker(
            "amqp_quorum_tasks", amqp_url, *args, backend_url=backend_url, env_extra=env
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def test_poison_task_is_dead_lettered_after_the_cap_and_requeue_brings_it_back(
    client: Any, workers: Any, backend_url: str, amqp_url: str, env: dict[str, str]
) -> None:
    app, tasks = client
    results = redis.Redis.from_url(backend_url)
    key = uuid.uuid4().hex
    sent = tasks.suicide.delay(key)
    worker = workers("-P", "prefork", "-c", "1", "-l", "info")
    # task_max_redeliveries=2: three runs each kill the child, then it is a dead letter
    wait_until(lambda: app.broker.dead_letter_count(QUEUE) == 1, "the dead letter")
    assert results.llen(f"attempts:{key}") == 3
    wait_until(lambda: sent.state == states.FAILURE, "the stored failure")
    with pytest.raises(WorkerLostError):
        sent.get(timeout=1, propagate=True)
    (letter,) = app.broker.dead_letters(QUEUE)
    assert letter.task_id == sent.id
    assert "died 3 times" in letter.reason and "task_max_redeliveries=2" in letter.reason
    assert app.broker.queue_length(QUEUE) == 0
    assert worker.process.poll() is None  # the worker itself lives on

    # the same command as on Redis lists it and puts it back, as a new message
    cli = [sys.executable, "-m", "celeriac", "-A", "amqp_quorum_tasks", "dead"]
    run_env = subprocess_env(amqp_url, backend_url, **env)
    shown = subprocess.run(
        [*cli, "list", "-Q", QUEUE], env=run_env, cwd=SUPPORT, capture_output=True, timeout=60
    )
    assert shown.returncode == 0 and b"1 dead letter" in shown.stdout, shown
    assert sent.id.encode() in shown.stdout and b"died 3 times" in shown.stdout
    moved = subprocess.run(
        [*cli, "requeue", "-Q", QUEUE, "--id", sent.id],
        env=run_env,
        cwd=SUPPORT,
        capture_output=True,
        timeout=60,
    )
    assert moved.returncode == 0, moved
    # it runs again, with a fresh count: three more runs before it is dead once more, and
    # the first letter is gone (moved back, not copied)
    wait_until(
        lambda: any(d.time > letter.time for d in app.broker.dead_letters(QUEUE)),
        "the second dead letter",
    )
    assert results.llen(f"attempts:{key}") == 6
    (again,) = app.broker.dead_letters(QUEUE)
    assert again.task_id == sent.id and "died 3 times" in again.reason


def test_dead_letters_of_a_rabbitmq_delivery_limit_policy_read_and_requeue(
    client: Any, rabbit_node: RabbitNode
) -> None:
    app, tasks = client
    queue = "quorum-policy"
    forget(rabbit_node, queue)
    policy = (
        '{"delivery-limit": 1, "dead-letter-exchange": "", '
        f'"dead-letter-routing-key": "celeriac.dead.{queue}"}}'
    )
    name = "quorum-policy-limit"
    rabbit_node.ctl("set_policy", "--apply-to", "queues", name, f"^{queue}$", policy)
    try:
        app.broker.declare_queues([app.broker.queues[queue]])
        sent = tasks.ran_at.apply_async(queue=queue)
        conn = amqp.Connection(f"127.0.0.1:{rabbit_node.port}", userid="guest", password="guest")
        conn.connect()
        try:
            for _ in range(2):  # taken and given back unacked twice: past the limit of 1
                channel = conn.channel()
                wait_until(functools.partial(_take, channel, queue), "a delivery")
                channel.close()
        finally:
            conn.close()
        wait_until(lambda: app.broker.dead_letter_count(queue) == 1, "RabbitMQ's dead letter")
        (letter,) = app.broker.dead_letters(queue)
        assert letter.task_id == sent.id and letter.task_name == "quorum.ran_at"
        assert "delivery_limit" in letter.reason and letter.time > 0
        assert app.broker.requeue_dead(queue, sent.id) == 1
        assert app.broker.dead_letter_count(queue) == 0
        back = _get(rabbit_node, queue)
        headers = back.properties["application_headers"]
        assert headers["id"] == sent.id and "x-death" not in headers
        assert headers.get("x-delivery-count", 0) == 0  # a new message: its count starts afresh
    finally:
        rabbit_node.ctl("clear_policy", name)
        forget(rabbit_node, queue)


def _take(channel: Any, queue: str) -> bool:
    return channel.basic_get(queue, no_ack=False) is not None


def _get(node: RabbitNode, queue: str) -> Any:
    conn = amqp.Connection(f"127.0.0.1:{node.port}", userid="guest", password="guest")
    conn.connect()
    try:
        message = conn.channel().basic_get(queue, no_ack=True)
        assert message is not None
        return message
    finally:
        conn.close()


def test_countdown_on_a_quorum_queue_waits_in_rabbitmq_and_survives_a_worker_sigkill(
    client: Any, workers: Any, rabbit_node: RabbitNode
) -> None:
    tasks = client[1]
    worker = workers("-P", "solo")
    sent_at = time.time()
    sent = tasks.ran_at.apply_async(countdown=3.5)
    due = sent_at + 3.5
    # the message waits in a delay level (3 s: the 2 s and 1 s levels), not in the worker
    delayed = [amqp_delayed.level_name(level) for level in range(2)]
    assert sum(ready_count(rabbit_node, name) for name in delayed) == 1
    worker.signal(signal.SIGKILL)
    worker.wait(10)
    assert ready_count(rabbit_node, QUEUE) == 0  # the dead worker held nothing to give back
    assert sum(ready_count(rabbit_node, name) for name in delayed) == 1
    workers("-P", "solo")
    ran = sent.get(timeout=WAIT_S)
    assert due <= ran["time"] <= due + 3.0, ran["time"] - due


def test_countdown_on_a_direct_exchange_is_held_by_the_worker_as_before(
    client: Any, rabbit_node: RabbitNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_EXCHANGE_TYPE", "direct")
    monkeypatch.setenv("TEST_QUEUE", "quorum-direct")
    forget(rabbit_node, "quorum-direct")
    app = Celery("direct_client", broker=client[0].conf.broker_url)
    configure(app)
    try:
        define_tasks(app, "client").ran_at.apply_async(countdown=60)
        # on the queue at once, for a worker to hold until due
        assert ready_count(rabbit_node, "quorum-direct") == 1
    finally:
        app.close()
        forget(rabbit_node, "quorum-direct")
