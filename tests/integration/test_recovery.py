"""Nothing is lost: a dead worker's messages come back in seconds (its heartbeat stops), a
live worker's long or far-future tasks are never handed to another, and a task that keeps
killing its worker ends in the dead-letter list instead of looping."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
import redis

from celeriac import Celery
from celeriac.errors import WorkerLostError
from tests.support.workers import WorkerProcess

Factory = Callable[..., WorkerProcess]


@pytest.fixture
def client(redis_url: str, backend_url: str) -> Celery:
    return Celery("client", broker=redis_url, backend=backend_url)


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Seconds it took for *predicate* to hold; fails after *timeout_s*."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout_s, f"timed out waiting for {what}"
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_killed_worker_task_is_restored_by_a_survivor_within_ten_seconds(
    pool: str, worker_factory: Factory, client: Celery, r: redis.Redis
) -> None:
    victim = worker_factory("reliable_tasks", "-P", pool, "-c", "1", "-n", "victim@%h")
    client.send_task("rel.count", ("k", 3.0))
    wait_until(lambda: r.llen("started:k") == 1, 10, "the task to start")
    victim.signal(signal.SIGKILL)
    for kid in victim.children():
        kid.kill()
    killed_at = time.monotonic()
    worker_factory("reliable_tasks", "-P", "solo", "-n", "survivor@%h")
    wait_until(lambda: r.llen("started:k") == 2, 15, "the task to run again")
    assert time.monotonic() - killed_at < 10


def test_long_task_of_a_live_worker_is_not_duplicated_past_the_visibility_timeout(
    worker_factory: Factory, client: Celery, r: redis.Redis
) -> None:
    env = {"TEST_VISIBILITY_TIMEOUT": "1"}
    worker_factory("reliable_tasks", "-P", "solo", "-n", "a@%h", env_extra=env)
    result = client.send_task("rel.count", ("long", 4.0))
    wait_until(lambda: r.llen("started:long") == 1, 10, "the task to start")
    worker_factory("reliable_tasks", "-P", "solo", "-n", "b@%h", env_extra=env)
    assert result.get(timeout=15) == 1
    assert r.llen("started:long") == 1


def test_far_future_eta_is_parked_broker_side_not_in_worker_memory(
    worker_factory: Factory, client: Celery, r: redis.Redis
) -> None:
    worker_factory("reliable_tasks", "-P", "solo", "-l", "debug")
    eta = datetime.now(timezone.utc) + timedelta(hours=2)
    result = client.send_task("rel.count", ("eta",), eta=eta)
    wait_until(lambda: r.zcard("celeriac.delayed") == 1, 10, "the task to be parked")
    assert r.hlen("unacked") == 0
    assert r.llen("celery") == 0
    assert result.state == "PENDING"


def test_eta_task_runs_once_on_time_with_two_workers_and_a_short_visibility_timeout(
    worker_factory: Factory, client: Celery, r: redis.Redis
) -> None:
    env = {"TEST_VISIBILITY_TIMEOUT": "1"}
    worker_factory("reliable_tasks", "-P", "solo", "-n", "a@%h", env_extra=env)
    worker_factory("reliable_tasks", "-P", "solo", "-n", "b@%h", env_extra=env)
    due = datetime.now(timezone.utc) + timedelta(seconds=3)
    result = client.send_task("rel.count", ("eta2",), eta=due)
    assert result.get(timeout=15) == 1
    place = result.place
    assert place is not None
    assert 0 <= place["started_at"] - due.timestamp() < 0.5
    assert r.get("runs:eta2") == b"1"


def test_task_that_kills_its_worker_ends_in_the_dead_letter_list(
    worker_factory: Factory, client: Celery, r: redis.Redis
) -> None:
    worker_factory(
        "reliable_tasks", "-P", "prefork", "-c", "1", env_extra={"TEST_MAX_REDELIVERIES": "2"}
    )
    result = client.send_task("rel.suicide", ("poison",))
    with pytest.raises(WorkerLostError):
        result.get(timeout=20)
    assert r.get("runs:poison") == b"3"
    letters = r.lrange("celeriac.dead.celery", 0, -1)
    assert len(letters) == 1
    assert b"died 3 times" in letters[0]
    assert r.hlen("unacked") == 0


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_a_worker_killed_again_and_again_counts_no_loss_for_what_it_only_prefetched(
    pool: str, worker_factory: Factory, client: Celery, r: redis.Redis
) -> None:
    # three 2 s tasks: each worker runs one and holds others, waiting, when it dies; only
    # the running one counts a loss (before, all it held did), so nothing gets near the cap
    def losses() -> int:
        return sum(int(value) for value in r.hvals("celeriac.losses"))

    results = [client.send_task("rel.count", (f"pre{i}", 2.0)) for i in range(3)]
    for round_ in range(2):
        victim = worker_factory("reliable_tasks", "-P", pool, "-c", "1", "-n", f"v{round_}@%h")
        # the previous victim's messages recovered by this one: one loss for each kill so far
        wait_until(lambda n=round_: losses() == n, 20, f"{round_} loss(es) counted")
        wait_until(
            lambda: any(r.scard(key) for key in r.scan_iter("celeriac.idle.*")),
            20,
            "a beat that says what this worker holds without having started it",
        )
        victim.signal(signal.SIGKILL)
        for kid in victim.children():
            kid.kill()
        victim.wait()
    worker_factory("reliable_tasks", "-P", "solo", "-n", "survivor@%h")
    assert sorted(result.get(timeout=30) for result in results) == [1, 1, 1]
    assert losses() <= 2  # the two kills (a finished task's count is dropped with its ack)
    assert r.llen("celeriac.dead.celery") == 0
