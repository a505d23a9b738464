"""Faults on Redis beyond a clean restart (tests/integration/test_outage.py has the restart
itself, the reconnection log and the publish retries): the worker recovers by itself, loses
no task, runs no finished task twice, and still consumes afterwards (Celery's worker may stop
consuming silently after a reconnect, celery#8030); a client gets a clear error instead of a
hang.

- Redis restarted mid-drain with AOF on: every task done exactly once, new tasks still run;
- Redis frozen with SIGSTOP (7 s here; CELERIAC_SIGSTOP_S=20 for the issue's 20 s) and
  continued;
- Redis at ``maxmemory`` with ``noeviction``: producers get a clear error, the worker keeps
  running and drains again once memory is freed.

Each test starts a Redis of its own (the session one is shared); tasks record their runs in
the session Redis, which stays up throughout.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from celeriac import Celery
from celeriac.errors import BrokerError
from tests.support.chaos import chaos_workers
from tests.support.redis_server import RedisServer, cleanup, start_redis
from tests.support.waiting import wait_until
from tests.support.workers import WorkerProcess

TASKS = 40
SOCKET_TIMEOUT_S = 1.5  # the client's broker_transport_options socket_timeout here


@pytest.fixture
def own_redis(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    extra = getattr(request, "param", [])
    server = start_redis(["--appendonly", "yes", "--appendfsync", "always", *extra])
    try:
        yield server
    finally:
        if server.process.poll() is None:
            os.kill(server.process.pid, signal.SIGCONT)  # never leave it frozen
        cleanup(server)


@pytest.fixture
def records(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client(3)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def start_worker(
    own_redis: RedisServer, redis_server: RedisServer
) -> Iterator[Callable[..., WorkerProcess]]:
    with chaos_workers(own_redis, redis_server.url(3)) as start:
        yield start


@pytest.fixture
def client(own_redis: RedisServer) -> Iterator[Celery]:
    app = Celery("faults_client", broker=own_redis.url(0), backend=own_redis.url(1))
    app.conf.broker_transport_options = {"socket_timeout": SOCKET_TIMEOUT_S}
    app.conf.task_publish_retry_policy = {"max_retries": 1, "interval_step": 0.1}
    yield app
    app.close()


def publish(client: Celery, run: str, count: int, seconds: float = 0.05) -> None:
    for index in range(count):
        client.send_task("chaos.record", (run, f"t{index:03d}", seconds))


def runs_of(records: redis.Redis, run: str) -> dict[str, int]:
    raw: dict[bytes, bytes] = records.hgetall(f"{run}:runs")  # type: ignore[assignment]
    return {k.decode(): int(v) for k, v in raw.items()}


def assert_each_ran_once(records: redis.Redis, run: str, count: int) -> None:
    wait_until(lambda: records.scard(f"{run}:done") == count, 40, f"all {count} of {run}")
    twice = {label: n for label, n in runs_of(records, run).items() if n > 1}
    assert twice == {}, f"finished tasks run again: {twice}"


@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_redis_restart_mid_drain_loses_nothing_runs_nothing_twice_and_consumes_after(
    pool: str,
    start_worker: Callable[..., WorkerProcess],
    client: Celery,
    own_redis: RedisServer,
    records: redis.Redis,
) -> None:
    worker = start_worker("-P", pool, "-c", "2")
    run = f"restart-{uuid.uuid4().hex[:8]}"
    publish(client, run, TASKS)
    wait_until(lambda: records.scard(f"{run}:done") >= 5, 20, "the first tasks")
    own_redis.restart()  # SIGTERM: Redis writes its AOF and exits; then it starts again
    assert_each_ran_once(records, run, TASKS)
    # celery#8030: after the reconnect the worker must still take new work
    after = f"after-{uuid.uuid4().hex[:8]}"
    publish(client, after, 5)
    assert_each_ran_once(records, after, 5)
    assert worker.process.poll() is None


def _freeze_and_continue(
    pause_s: float,
    start_worker: Callable[..., WorkerProcess],
    client: Celery,
    own_redis: RedisServer,
    records: redis.Redis,
) -> None:
    worker = start_worker("-P", "prefork", "-c", "2")
    run = f"stop-{uuid.uuid4().hex[:8]}"
    publish(client, run, TASKS)
    wait_until(lambda: records.scard(f"{run}:done") >= 5, 20, "the first tasks")
    frozen_at = time.monotonic()
    os.kill(own_redis.process.pid, signal.SIGSTOP)
    try:
        # a client gets a clear error within its socket timeout, not a hang
        started = time.monotonic()
        with pytest.raises(BrokerError, match="did not answer") as caught:
            client.send_task("chaos.record", ("frozen", "x"))
        took = time.monotonic() - started
        assert took < SOCKET_TIMEOUT_S * 2 + 1.0, f"the publish hung {took:.1f}s"
        assert "socket_timeout" in str(caught.value)
        remaining = pause_s - (time.monotonic() - frozen_at)
        if remaining > 0:
            time.sleep(remaining)  # the freeze itself, not a synchronisation
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)
    assert_each_ran_once(records, run, TASKS)
    after = f"after-{uuid.uuid4().hex[:8]}"
    publish(client, after, 5)
    assert_each_ran_once(records, after, 5)
    assert worker.process.poll() is None, worker.log()


def test_redis_frozen_by_sigstop_then_continued(
    start_worker: Callable[..., WorkerProcess],
    client: Celery,
    own_redis: RedisServer,
    records: redis.Redis,
) -> None:
    # 7 s in CI (longer than worker_dead_after, the point of the test); the 20 s:
    # CELERIAC_SIGSTOP_S=20 pytest tests/integration/test_redis_faults.py -k sigstop
    pause_s = float(os.environ.get("CELERIAC_SIGSTOP_S", "7"))
    _freeze_and_continue(pause_s, start_worker, client, own_redis, records)


def fill_to_maxmemory(admin: redis.Redis) -> None:
    """Fill db 2 until Redis refuses even a small write."""
    index = 0
    for size in (256 * 1024, 16 * 1024, 1024, 64):
        with pytest.raises(redis.exceptions.ResponseError, match="maxmemory"):
            for _ in range(10_000):
                index += 1
                admin.set(f"filler:{index}", b"x" * size)


@pytest.mark.parametrize(
    "own_redis", [["--maxmemory", "8mb", "--maxmemory-policy", "noeviction"]], indirect=True
)
def test_redis_at_maxmemory_refuses_producers_clearly_and_the_worker_recovers(
    start_worker: Callable[..., WorkerProcess],
    client: Celery,
    own_redis: RedisServer,
    records: redis.Redis,
) -> None:
    worker = start_worker("-P", "prefork", "-c", "2")
    run = f"oom-{uuid.uuid4().hex[:8]}"
    publish(client, run, 10)
    assert_each_ran_once(records, run, 10)
    admin = own_redis.client(2)
    fill_to_maxmemory(admin)
    with pytest.raises(BrokerError, match="maxmemory") as caught:
        client.send_task("chaos.record", (run, "refused", 0.0))
    print(f"\nproducer error at maxmemory: {caught.value}")
    assert worker.process.poll() is None
    admin.flushdb()  # memory frees
    after = f"after-{uuid.uuid4().hex[:8]}"
    publish(client, after, 10)
    assert_each_ran_once(records, after, 10)
    assert worker.process.poll() is None, worker.log()
    assert "Traceback" not in worker.log()


def test_publish_during_a_freeze_is_not_sent_twice_when_redis_continues(
    client: Celery, own_redis: RedisServer
) -> None:
    """A publish that timed out may still land when Redis resumes: it is not retried, so it
    lands at most once."""
    client.send_task("chaos.record", ("warm", "x"))
    os.kill(own_redis.process.pid, signal.SIGSTOP)
    try:
        with pytest.raises(BrokerError):
            client.send_task("chaos.record", ("frozen", "x"))
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)
    check = own_redis.client(0)
    assert check.ping()
    assert check.llen("celery") <= 2, "the frozen publish landed more than once"
