"""Time limits and revoke(terminate=True) on every pool, with a real worker and real Redis.

Per pool: a soft limit is raised inside the task, which catches it and its result is stored;
a hard limit stores FAILURE TimeLimitExceeded and the worker serves the next task; a
terminate stops a running task (REVOKED "terminated"). Limits come from the call
(``apply_async(time_limit=, soft_time_limit=)``), the task's options, or the worker's.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis

from celeriac import Celery, TaskRevokedError, TimeLimitExceeded
from tests.support.waiting import wait_until
from tests.support.workers import WorkerProcess

Factory = Callable[..., WorkerProcess]

POOLS = ["solo", "threads", "gevent", "eventlet", "prefork"]


@pytest.fixture
def client(redis_url: str, backend_url: str) -> Celery:
    return Celery("client", broker=redis_url, backend=backend_url)


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def _pool_args(pool: str) -> list[str]:
    return ["-P", pool, "-c", "1" if pool in ("solo", "prefork") else "2"]


@pytest.mark.parametrize("pool", POOLS)
def test_soft_hard_and_terminate_on_each_pool(
    worker_factory: Factory, client: Celery, r: redis.Redis, pool: str
) -> None:
    worker = worker_factory("limit_tasks", *_pool_args(pool))

    soft = client.send_task("limits.soft_caught", ("soft",), soft_time_limit=0.5)
    assert soft.get(timeout=15) == "soft limit caught"
    by_option = client.send_task("limits.soft_by_option", ("opt",))
    assert by_option.get(timeout=15) == "soft limit caught"

    started = time.monotonic()
    hard = client.send_task("limits.forever", ("hard",), time_limit=1)
    with pytest.raises(TimeLimitExceeded):
        hard.get(timeout=15)
    assert hard.state == "FAILURE"
    assert time.monotonic() - started < 10, "the hard limit stopped the task well before 30 s"
    assert client.send_task("limits.add", (2, 3)).get(timeout=15) == 5

    term = client.send_task("limits.forever", ("term",))
    wait_until(lambda: r.exists("started:term") == 1, 15, "the task to start")
    term.revoke(terminate=True)
    with pytest.raises(TaskRevokedError, match="terminated"):
        term.get(timeout=15)
    assert client.send_task("limits.add", (3, 4)).get(timeout=15) == 7
    assert worker.process.poll() is None


def test_threads_task_stuck_in_c_is_abandoned_and_the_worker_recycles_itself(
    worker_factory: Factory, client: Celery, r: redis.Redis
) -> None:
    worker = worker_factory("limit_tasks", "-P", "threads", "-c", "2")
    pid = worker.pid
    stuck = client.send_task("limits.stuck", ("stuck",), time_limit=1)
    with pytest.raises(TimeLimitExceeded):
        stuck.get(timeout=20)
    # the process is replaced in place: same pid, a fresh worker that serves the next task
    wait_until(lambda: worker.log().count(" ready.") == 2, 20, "the worker to exec afresh")
    assert "recycling: exec" in worker.log()
    assert client.send_task("limits.add", (1, 1)).get(timeout=30) == 2
    assert worker.pid == pid and worker.process.poll() is None


def test_worker_wide_limits_from_the_command_line(worker_factory: Factory, client: Celery) -> None:
    worker_factory("limit_tasks", "-P", "threads", "-c", "2", "--soft-time-limit", "0.5")
    assert client.send_task("limits.soft_caught", ("cli",)).get(timeout=15) == "soft limit caught"


def test_asyncio_pool_soft_hard_and_terminate_on_coroutine_tasks(
    worker_factory: Factory, client: Celery, r: redis.Redis
) -> None:
    worker = worker_factory("limit_tasks", "-P", "asyncio", "-c", "4")
    soft = client.send_task("limits.asoft_caught", ("asoft",), soft_time_limit=0.5)
    assert soft.get(timeout=15) == "soft limit caught"
    started = time.monotonic()
    hard = client.send_task("limits.aforever", ("ahard",), time_limit=1)
    with pytest.raises(TimeLimitExceeded):
        hard.get(timeout=15)
    assert time.monotonic() - started < 10
    term = client.send_task("limits.aforever", ("aterm",))
    wait_until(lambda: r.exists("started:aterm") == 1, 15, "the task to start")
    term.revoke(terminate=True)
    with pytest.raises(TaskRevokedError, match="terminated"):
        term.get(timeout=15)
    assert client.send_task("limits.add", (3, 4)).get(timeout=15) == 7
    assert worker.process.poll() is None


def test_asyncio_pool_limits_plain_def_tasks_in_their_threads(
    worker_factory: Factory, client: Celery, r: redis.Redis
) -> None:
    worker = worker_factory("limit_tasks", "-P", "asyncio", "-c", "4")
    soft = client.send_task("limits.soft_caught", ("ssoft",), soft_time_limit=0.5)
    assert soft.get(timeout=15) == "soft limit caught"
    hard = client.send_task("limits.forever", ("shard",), time_limit=1)
    with pytest.raises(TimeLimitExceeded):
        hard.get(timeout=15)
    term = client.send_task("limits.forever", ("sterm",))
    wait_until(lambda: r.exists("started:sterm") == 1, 15, "the task to start")
    term.revoke(terminate=True)
    with pytest.raises(TaskRevokedError, match="terminated"):
        term.get(timeout=15)
    assert client.send_task("limits.add", (3, 4)).get(timeout=15) == 7
    assert worker.process.poll() is None
