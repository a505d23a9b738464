"""Task semantics that make "nothing is lost" hold for work that is not done yet: retries
(Celery's names, the ``retries`` header counting up, state RETRY stored), ETA / countdown
parked broker-side and honoured on time, ``expires`` giving REVOKED, a warm shutdown that
puts prefetched messages back and exits 0, and the redelivery cap that sends a task which
kills its worker to the dead letters.

Tasks: tests/support/retry_tasks.py; each run records its retries header and start time.
"""

from __future__ import annotations

import itertools
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pytest
import redis

from celeriac import Celery, states
from celeriac.errors import MaxRetriesExceededError
from tests.support.redis_server import RedisServer, cleanup, start_redis
from tests.support.workers import WorkerProcess, start_celeriac_worker

DELAYED = "celeriac.delayed"
SLACK_S = 0.6  # how late a retry may run on a loaded two-core CI machine


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s}s waiting for {what}"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """A Redis of this module's own: its worker lives across tests."""
    instance = start_redis()
    try:
        yield instance
    finally:
        cleanup(instance)


@pytest.fixture(scope="module")
def worker(server: RedisServer) -> Iterator[WorkerProcess]:
    process = start_celeriac_worker(
        "retry_tasks", server.url(0), "-P", "prefork", "-c", "2", backend_url=server.url(1)
    )
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(server: RedisServer) -> Iterator[Celery]:
    app = Celery("retries_client", broker=server.url(0), backend=server.url(1))
    yield app
    app.close()


@pytest.fixture(scope="module")
def r(server: RedisServer) -> Iterator[redis.Redis]:
    client = server.client(0)
    yield client
    client.close()


def key() -> str:
    return uuid.uuid4().hex[:10]


def attempts(r: redis.Redis, name: str) -> list[tuple[int, float]]:
    """(retries header, start time) of every run of *name*, in order."""
    out = []
    for line in r.lrange(f"attempts:{name}", 0, -1):
        retries, moment, _pid = line.decode().split()
        out.append((int(retries), float(moment)))
    return out


def gaps(runs: list[tuple[int, float]]) -> list[float]:
    return [b[1] - a[1] for a, b in itertools.pairwise(runs)]


# retries
def test_retry_with_countdown_counts_the_retries_header_up_by_one_each_time(
    worker: WorkerProcess, client: Celery, r: redis.Redis
) -> None:
    name = key()
    result = client.send_task("retry.countdown", (name, 3, 0.3))
    assert result.get(timeout=20) == 3
    runs = attempts(r, name)
    assert [retries for retries, _ in runs] == [0, 1, 2, 3]
    assert all(0.3 <= gap < 0.3 + SLACK_S for gap in gaps(runs)), gaps(runs)


def test_retry_stores_state_retry_and_parks_the_retry_broker_side(
    worker: WorkerProcess, client: Celery, r: redis.Redis
) -> None:
    name = key()
    result = client.send_task("retry.countdown", (name, 1, 60.0))
    wait_until(lambda: result.state == states.RETRY, "state RETRY")
    assert type(result.info).__name__ == "Flaky"
    # the retry waits in the broker's delayed set, not in the worker: nothing unacked
    wait_until(lambda: r.zcard(DELAYED) >= 1, "the retry to be parked")
    assert r.hlen("unacked") == 0
    (member,) = [m for m in r.zrange(DELAYED, 0, -1) if result.id.encode() in m]
    assert b'"retries":1' in member
    r.zrem(DELAYED, member)  # not for the other tests' worker to run an hour from now


def test_retry_with_an_eta_runs_at_that_time(
    worker: WorkerProcess, client: Celery, r: redis.Redis
) -> None:
    name = key()
    assert client.send_task("retry.eta", (name, 0.8)).get(timeout=20) == 1
    (first, second) = attempts(r, name)
    assert 0.8 <= second[1] - first[1] < 0.8 + SLACK_S


def test_retry_without_countdown_waits_default_retry_delay(
    worker: WorkerProcess, client: Celery, r: redis.Redis
) -> None:
    name = key()
    assert client.send_task("retry.default_delay", (name,)).get(timeout=20) == 1
    (gap,) = gaps(attempts(r, name))
    assert 0.4 <= gap < 0.4 + SLACK_S


def test_max_retries_exceeded_raises_max_retries_exceeded_error(
    worker: WorkerProcess, client: Celery, r: redis.Redis
) -> None:
    name = key()
    result = client.send_task("retry.forever", (name, 2, False))
    with pytest.raises(MaxRetriesExceededError, match=r"max_retries=2"):
        result.get(timeout=20)
    assert [retries for retries, _ in attempts(r, name)] == [0, 1, 2]
    assert result.state == states.FAILURE


def test_max_retries_exceeded_with_exc_raises_that_exception(
    worker: WorkerProcess, client: Celery, r: redis.Redis
) -> None:
    name = key()
    result = client.send_task("retry.forever", (name, 1, True))
    with pytest.raises(Exception, match="gave up") as caught:
        result.get(timeout=20)
    assert type(caught.value).__name__ == "Flaky"
    assert len(attempts(r, name)) == 2


def test_autoretry_for_with_backoff_doubles_the_delay_up_to_retry_backoff_max(
    worker: WorkerProcess, client: Celery, r: redis.Redis
) -> None:
    name = key()
    result = client.send_task("retry.auto_backoff", (name,))
    with pytest.raises(Exception, match="always"):
        result.get(timeout=20)
    runs = attempts(r, name)
    assert [retries for retries, _ in runs] == [0, 1, 2, 3]  # max_retries=3
    for gap, expected in zip(gaps(runs), [0.2, 0.4, 0.5], strict=True):  # 0.8 capped to 0.5
        assert expected <= gap < expected + SLACK_S, gaps(runs)


def test_retry_jitter_keeps_each_delay_within_its_backoff(
    worker: WorkerProcess, client: Celery, r: redis.Redis
) -> None:
    name = key()
    with pytest.raises(Exception, match="always"):
        client.send_task("retry.auto_jitter", (name,)).get(timeout=20)
    runs = attempts(r, name)
    assert len(runs) == 3
    for gap, cap in zip(gaps(runs), [0.4, 0.8], strict=True):
        assert 0 <= gap < cap + SLACK_S, gaps(runs)


def test_autoretry_uses_retry_kwargs_and_succeeds_when_the_error_stops(
    worker: WorkerProcess, client: Celery, r: redis.Redis
) -> None:
    name = key()
    assert client.send_task("retry.auto_kwargs", (name, 1)).get(timeout=20) == 1
    (gap,) = gaps(attempts(r, name))
    assert 0.1 <= gap < 0.1 + SLACK_S
    gives_up = key()
    with pytest.raises(KeyError):
        client.send_task("retry.auto_kwargs", (gives_up, 5)).get(timeout=20)
    assert len(attempts(r, gives_up)) == 2  # retry_kwargs max_retries=1


# ETA and expiry
def test_countdown_is_parked_broker_side_and_runs_on_time(
    worker: WorkerProcess, client: Celery, r: redis.Redis
) -> None:
    name = key()
    due = datetime.now(timezone.utc) + timedelta(seconds=1.5)
    result = client.send_task("retry.record", (name,), eta=due)
    wait_until(lambda: r.zcard(DELAYED) >= 1, "the task to be parked")
    assert r.hlen("unacked") == 0 and r.llen("celery") == 0
    assert result.get(timeout=20)["retries"] == 0
    ((_, started),) = attempts(r, name)
    late_s = started - due.timestamp()
    print(f"\nETA lateness: {late_s * 1000:.1f} ms")
    assert 0 <= late_s < 0.25


def test_expires_before_its_eta_is_revoked_not_run(
    worker: WorkerProcess, client: Celery, r: redis.Redis
) -> None:
    name = key()
    result = client.send_task("retry.record", (name,), countdown=1.0, expires=0.3)
    wait_until(lambda: result.state == states.REVOKED, "state REVOKED")
    assert attempts(r, name) == []


def test_expired_message_is_revoked_not_run(
    worker: WorkerProcess, client: Celery, r: redis.Redis
) -> None:
    name = key()
    past = datetime.now(timezone.utc) - timedelta(seconds=5)
    result = client.send_task("retry.record", (name,), expires=past)
    wait_until(lambda: result.state == states.REVOKED, "state REVOKED")
    assert attempts(r, name) == []


# shutdown and poison
@pytest.fixture
def fresh(server: RedisServer, worker: WorkerProcess) -> Iterator[Callable[..., WorkerProcess]]:
    """Workers of a test's own (after the module's worker is stopped, so it takes nothing)."""
    worker.stop()
    started: list[WorkerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> WorkerProcess:
        process = start_celeriac_worker(
            "retry_tasks", server.url(0), *args, backend_url=server.url(1), env_extra=env
        )
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_warm_shutdown_finishes_the_running_task_puts_prefetched_back_and_exits_0(
    pool: str, fresh: Callable[..., WorkerProcess], client: Celery, r: redis.Redis
) -> None:
    r.delete("celery", "unacked", "unacked_index")
    long_name, short = key(), [key() for _ in range(5)]
    running = client.send_task("retry.record", (long_name, 2.0))
    for name in short:
        client.send_task("retry.record", (name,))
    worker = fresh("-P", pool, "-c", "1", "--prefetch-multiplier", "4")
    wait_until(lambda: r.llen(f"attempts:{long_name}") == 1, "the long task to start")
    assert r.llen("celery") < 5  # the worker prefetched some of the short ones
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0, worker.log()
    assert running.state == states.SUCCESS  # the running one finished
    assert all(r.llen(f"attempts:{name}") == 0 for name in short)  # none started
    assert r.llen("celery") == 5  # every prefetched one is back on the queue
    assert r.hlen("unacked") == 0


def test_task_that_kills_its_worker_goes_to_dead_letters_after_the_redelivery_cap(
    fresh: Callable[..., WorkerProcess], client: Celery, r: redis.Redis
) -> None:
    # alone on the queue: messages prefetched with it would count its worker's deaths too
    r.delete("celery", "unacked", "unacked_index", "celeriac.losses")
    name = key()
    client.send_task("retry.suicide", (name,))
    env = {"TEST_MAX_REDELIVERIES": "2"}
    for run in range(1, 4):  # each run kills the worker; a restarted one restores the message
        worker = fresh("-P", "solo", "-n", f"poison{run}@%h", env=env)
        wait_until(lambda run=run: r.llen(f"attempts:{name}") == run, f"run {run}")
        worker.wait(20)
    survivor = fresh("-P", "solo", "-n", "survivor@%h", env=env)
    wait_until(lambda: r.llen("celeriac.dead.celery") == 1, "the dead letter")
    (letter,) = r.lrange("celeriac.dead.celery", 0, -1)
    assert b"died 3 times" in letter and b"task_max_redeliveries=2" in letter
    assert r.llen(f"attempts:{name}") == 3
    assert r.hlen("unacked") == 0 and r.llen("celery") == 0
    assert survivor.process.poll() is None
