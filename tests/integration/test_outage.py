"""Broker outages: Redis (with AOF, fsync always) stopped and started again in the middle of a
run. The worker says so in its log, reconnects with backoff, resumes, loses nothing and keeps
running; a client publishing while Redis is down retries by task_publish_retry_policy and
then raises a clear BrokerError.

Each test gets a Redis of its own (not the session one), because each test stops it. The
tasks record their runs in the session Redis, which stays up throughout.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import redis

from celeriac import Celery
from celeriac.errors import BrokerError
from tests.support.chaos import chaos_workers
from tests.support.redis_server import RedisServer, cleanup, start_redis
from tests.support.waiting import wait_until
from tests.support.workers import WorkerProcess

TASKS = 60
TASK_SECONDS = 0.05
OUTAGE_LOG = "consumer: lost the broker"
BACK_LOG = "connected to"
DEAD_AFTER_S = 5.0  # worker_dead_after's default


@pytest.fixture
def aof_server() -> Iterator[RedisServer]:
    server = start_redis(["--appendonly", "yes", "--appendfsync", "always"])
    try:
        yield server
    finally:
        cleanup(server)


@pytest.fixture
def records(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client(2)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def start_worker(
    aof_server: RedisServer, redis_server: RedisServer
) -> Iterator[Callable[..., WorkerProcess]]:
    with chaos_workers(aof_server, redis_server.url(2)) as start:
        yield start


@pytest.fixture
def client(aof_server: RedisServer) -> Iterator[Celery]:
    app = Celery("outage_client", broker=aof_server.url(0), backend=aof_server.url(1))
    yield app
    app.close()


@dataclass
class Outage:
    run: str
    back_at: float  # time.time() when Redis answered PING again
    worker: WorkerProcess

    def done(self, records: redis.Redis) -> int:
        return int(records.scard(f"{self.run}:done"))


def run_through_outage(
    pool: str,
    start_worker: Callable[..., WorkerProcess],
    client: Celery,
    server: RedisServer,
    records: redis.Redis,
    down_s: float = 0.0,
) -> Outage:
    """Publish TASKS tasks, stop Redis once a few are done, start it again once the worker
    has logged the loss (and *down_s* more), and return when Redis is back."""
    worker = start_worker("-P", pool, "-c", "2", "-l", "info")
    run = f"outage-{uuid.uuid4().hex[:8]}"
    for index in range(TASKS):
        client.send_task("chaos.record", (run, f"t{index:03d}", TASK_SECONDS))
    wait_until(lambda: records.scard(f"{run}:done") >= 5, 20, "the first tasks to complete")
    server.stop()
    worker.wait_for_log(OUTAGE_LOG, timeout_s=20)
    time.sleep(down_s)  # the outage itself, not a synchronisation
    server.restart()
    return Outage(run, time.time(), worker)


@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_worker_loses_nothing_across_a_redis_restart(
    pool: str,
    start_worker: Callable[..., WorkerProcess],
    client: Celery,
    aof_server: RedisServer,
    records: redis.Redis,
) -> None:
    outage = run_through_outage(pool, start_worker, client, aof_server, records)
    wait_until(lambda: outage.done(records) == TASKS, 30, "every task to complete")


@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_worker_is_still_running_after_a_redis_restart(
    pool: str,
    start_worker: Callable[..., WorkerProcess],
    client: Celery,
    aof_server: RedisServer,
    records: redis.Redis,
) -> None:
    outage = run_through_outage(pool, start_worker, client, aof_server, records)
    wait_until(lambda: outage.done(records) == TASKS, 30, "every task to complete")
    assert outage.worker.process.poll() is None, outage.worker.log()
    assert client.send_task("chaos.record", ("after", "one")).get(timeout=15) == "one"


def test_worker_logs_the_outage_and_the_reconnection(
    start_worker: Callable[..., WorkerProcess],
    client: Celery,
    aof_server: RedisServer,
    records: redis.Redis,
) -> None:
    outage = run_through_outage("prefork", start_worker, client, aof_server, records)
    outage.worker.wait_for_log(BACK_LOG, timeout_s=20)
    log = outage.worker.log()
    assert "retrying in" in log
    assert "crashed" not in log and "CRITICAL" not in log, log


def test_remote_control_answers_again_after_a_redis_restart(
    start_worker: Callable[..., WorkerProcess],
    client: Celery,
    aof_server: RedisServer,
    records: redis.Redis,
) -> None:
    outage = run_through_outage("prefork", start_worker, client, aof_server, records)
    outage.worker.wait_for_log(BACK_LOG, timeout_s=20)

    def answered() -> bool:
        return any(
            answer == {"ok": "pong"}
            for reply in client.control.ping(timeout=0.5)
            for answer in reply.values()
        )

    wait_until(answered, 15, "a pong from the worker")


def test_two_workers_run_no_task_twice_across_an_outage_longer_than_dead_after(
    start_worker: Callable[..., WorkerProcess],
    client: Celery,
    aof_server: RedisServer,
    records: redis.Redis,
) -> None:
    """Both workers are alive throughout: when Redis returns, the first to sweep must not
    take the other's messages for a dead worker's just because nobody could beat."""
    start_worker("-P", "prefork", "-c", "2", "-n", "a@%h")
    start_worker("-P", "prefork", "-c", "2", "-n", "b@%h")
    run = f"long-{uuid.uuid4().hex[:8]}"
    for index in range(8):
        client.send_task("chaos.record", (run, f"t{index}", 3.0))
    wait_until(lambda: records.llen(f"{run}:events") >= 4, 20, "four tasks to start")
    aof_server.stop()
    time.sleep(DEAD_AFTER_S + 2.0)  # the outage itself: longer than worker_dead_after
    aof_server.restart()
    wait_until(lambda: records.scard(f"{run}:done") == 8, 40, "every task to complete")
    runs = {k.decode(): int(v) for k, v in records.hgetall(f"{run}:runs").items()}
    assert {label: n for label, n in runs.items() if n > 1} == {}


@pytest.mark.parametrize("down_s", [0.0, DEAD_AFTER_S + 2.0], ids=["brief", "long"])
def test_first_task_completes_soon_after_redis_is_back(
    down_s: float,
    start_worker: Callable[..., WorkerProcess],
    client: Celery,
    aof_server: RedisServer,
    records: redis.Redis,
) -> None:
    outage = run_through_outage("prefork", start_worker, client, aof_server, records, down_s)
    wait_until(lambda: outage.done(records) == TASKS, 30, "every task to complete")
    done_times = [
        float(raw.split()[3])
        for raw in records.lrange(f"{outage.run}:events", 0, -1)
        if raw.startswith(b"D ")
    ]
    recovery_s = min(t for t in done_times if t > outage.back_at) - outage.back_at
    print(f"\noutage recovery time after {down_s:g}s down: {recovery_s:.3f}s")
    assert recovery_s < 6.0  # the consumer's reconnect backoff is capped at 5 s


# the client side
@pytest.fixture
def retrying_client(aof_server: RedisServer) -> Iterator[Celery]:
    app = Celery("outage_publisher", broker=aof_server.url(0))
    app.conf.task_publish_retry_policy = {
        "max_retries": 3,
        "interval_start": 0.0,
        "interval_step": 0.1,
        "interval_max": 0.2,
    }
    app.send_task("chaos.record", ("warm-up", "x"))  # a pooled connection, then Redis goes
    yield app
    app.close()


def test_publish_while_redis_is_down_raises_broker_error_after_the_policys_retries(
    retrying_client: Celery, aof_server: RedisServer
) -> None:
    aof_server.stop()
    with pytest.raises(BrokerError, match=r"after 4 attempts") as caught:
        retrying_client.send_task("chaos.record", ("down", "x"))
    assert "check that redis-server is running" in str(caught.value)


class _RetryWatcher(logging.Handler):
    """Sets an event when the broker logs its first publish retry."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.retrying = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "unreachable" in record.getMessage():
            self.retrying.set()


def test_publish_that_starts_during_an_outage_lands_when_redis_returns_in_time(
    aof_server: RedisServer,
) -> None:
    app = Celery("outage_patient_publisher", broker=aof_server.url(0))
    app.conf.task_publish_retry_policy = {
        "max_retries": 100,
        "interval_start": 0.0,
        "interval_step": 0.1,
        "interval_max": 0.1,
    }
    app.send_task("chaos.record", ("warm-up", "x"))
    watcher = _RetryWatcher()
    broker_logger = logging.getLogger("celeriac.brokers.redis")
    broker_logger.addHandler(watcher)
    outcome: list[BaseException | str] = []

    def publish() -> None:
        try:
            outcome.append(app.send_task("chaos.record", ("late", "x")).id)
        except BaseException as exc:
            outcome.append(exc)

    try:
        aof_server.stop()
        sender = threading.Thread(target=publish)
        sender.start()
        assert watcher.retrying.wait(10), "the publish never retried"
        aof_server.restart()
        sender.join(20)
    finally:
        broker_logger.removeHandler(watcher)
        app.close()
    assert len(outcome) == 1 and isinstance(outcome[0], str), outcome
    assert aof_server.client(0).llen("celery") == 2
