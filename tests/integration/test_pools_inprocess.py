"""The seed's comparison table, measured, for the pools that run tasks in the main process.

Each test starts a real worker (``celeriac worker -P <pool>``) on the session's redis-server and
reads where and when its tasks ran from ``AsyncResult.place``: pid, OS thread, greenlet or
asyncio task, ``started_at``/``finished_at``. Concurrency is judged from those recorded
intervals. Messages a test wants run together are sent before the worker starts, so its first
fetch takes them all at once.
"""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest

from celeriac import AsyncResult, Celery
from tests.support.redis_server import RedisServer
from tests.support.workers import WorkerProcess

IN_PROCESS_POOLS = ["solo", "threads", "gevent", "eventlet", "asyncio"]
GREEN_POOLS = ["gevent", "eventlet"]
ONE_THREAD_POOLS = ["gevent", "eventlet", "asyncio"]
WHO_RAN_IT = {"gevent": "greenlet", "eventlet": "greenlet", "asyncio": "asyncio_task"}


def pool_param(pool: str, **marks: pytest.MarkDecorator) -> Any:
    return pytest.param(pool, marks=[marks[pool]] if pool in marks else [], id=pool)


@pytest.fixture
def client(redis_url: str, backend_url: str) -> Iterator[Celery]:
    app = Celery("client", broker=redis_url, backend=backend_url)
    yield app
    app.close()


def start_pool(
    worker_factory: Callable[..., WorkerProcess], pool: str, concurrency: int
) -> WorkerProcess:
    return worker_factory("pool_tasks", "-P", pool, "-c", str(concurrency))


def nap_task(pool: str) -> str:
    """An I/O-bound wait that lets others run in *pool*: a coroutine in asyncio."""
    return "pool.anap" if pool == "asyncio" else "pool.nap"


def slow_task(pool: str) -> str:
    return "pool.aslow" if pool == "asyncio" else "pool.slow"


def places_of(results: list[AsyncResult], timeout_s: float = 20.0) -> list[dict[str, Any]]:
    for result in results:
        result.get(timeout=timeout_s)
    places = [result.place for result in results]
    assert all(place is not None for place in places)
    return [place for place in places if place is not None]


def all_in_flight_at_once(places: list[dict[str, Any]]) -> bool:
    """True when one instant lies inside every recorded run interval."""
    return bool(max(p["started_at"] for p in places) < min(p["finished_at"] for p in places))


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition {predicate!r} not met in {timeout_s}s")
        time.sleep(0.05)


# processes
@pytest.mark.parametrize("pool", IN_PROCESS_POOLS)
def test_worker_is_one_process_without_children_while_tasks_run(
    pool: str, client: Celery, worker_factory: Callable[..., WorkerProcess]
) -> None:
    worker = start_pool(worker_factory, pool, 4)
    result = client.send_task(slow_task(pool), (1.0,))
    worker.wait_for_log(f"pool_tasks: started {result.id}")
    assert psutil.Process(worker.pid).children(recursive=True) == []
    assert result.get(timeout=20) == "finished"


# where tasks ran
@pytest.mark.parametrize("pool", IN_PROCESS_POOLS)
def test_tasks_run_in_the_worker_main_process(
    pool: str, client: Celery, worker_factory: Callable[..., WorkerProcess]
) -> None:
    results = [client.send_task("pool.where") for _ in range(4)]
    worker = start_pool(worker_factory, pool, 4)
    places = [result.get(timeout=20) for result in results]
    assert {place["pid"] for place in places} == {worker.pid}
    assert {place["pool"] for place in places} == {pool}


def test_solo_runs_tasks_in_the_main_thread_one_at_a_time(
    client: Celery, worker_factory: Callable[..., WorkerProcess]
) -> None:
    results = [client.send_task("pool.nap", (0.2,)) for _ in range(3)]
    start_pool(worker_factory, "solo", 1)
    places = sorted(places_of(results), key=lambda p: p["started_at"])
    assert {p["thread_name"] for p in places} == {"MainThread"}
    for before, after in itertools.pairwise(places):
        assert after["started_at"] >= before["finished_at"]


def test_threads_run_overlapping_tasks_in_distinct_threads(
    client: Celery, worker_factory: Callable[..., WorkerProcess]
) -> None:
    results = [client.send_task("pool.nap", (0.5,)) for _ in range(4)]
    worker = start_pool(worker_factory, "threads", 4)
    places = places_of(results)
    assert all_in_flight_at_once(places)
    assert {p["pid"] for p in places} == {worker.pid}
    assert len({p["thread_id"] for p in places}) == 4


@pytest.mark.parametrize("pool", ONE_THREAD_POOLS)
def test_io_bound_tasks_overlap_in_one_thread(
    pool: str, client: Celery, worker_factory: Callable[..., WorkerProcess]
) -> None:
    results = [client.send_task(nap_task(pool), (0.5,)) for _ in range(20)]
    start_pool(worker_factory, pool, 20)
    places = places_of(results)
    assert all_in_flight_at_once(places)
    assert {(p["thread_id"], p["thread_name"]) for p in places} == {
        (places[0]["thread_id"], "MainThread")
    }


@pytest.mark.parametrize("pool", ONE_THREAD_POOLS)
def test_each_overlapping_task_runs_in_its_own_greenlet_or_asyncio_task(
    pool: str, client: Celery, worker_factory: Callable[..., WorkerProcess]
) -> None:
    results = [client.send_task(nap_task(pool), (0.5,)) for _ in range(20)]
    start_pool(worker_factory, pool, 20)
    places = places_of(results)
    runners = [p[WHO_RAN_IT[pool]] for p in places]
    assert None not in runners
    assert len(set(runners)) == 20


@pytest.mark.parametrize("pool", GREEN_POOLS)
def test_a_task_blocked_on_redis_lets_other_greenlets_run(
    pool: str, client: Celery, worker_factory: Callable[..., WorkerProcess]
) -> None:
    # the waiters are fetched first, so they block before the pusher runs; blocking Redis
    # I/O that did not yield would hold the only thread and the pusher would never run
    waiters = [client.send_task("pool.blpop", ("pool-test-items", 15.0)) for _ in range(5)]
    pusher = client.send_task("pool.push", ("pool-test-items", 5))
    start_pool(worker_factory, pool, 10)
    assert pusher.get(timeout=10) == 5
    assert sorted(waiter.get(timeout=10) for waiter in waiters) == [f"item-{i}" for i in range(5)]


def test_asyncio_runs_sync_tasks_in_a_thread_off_the_loop(
    client: Celery, worker_factory: Callable[..., WorkerProcess]
) -> None:
    blocking = client.send_task("pool.nap", (1.0,))
    coroutines = [client.send_task("pool.awhere") for _ in range(3)]
    start_pool(worker_factory, "asyncio", 4)
    [sync_place] = places_of([blocking])
    async_places = places_of(coroutines)
    assert {p["thread_name"] for p in async_places} == {"MainThread"}
    assert sync_place["thread_id"] not in {p["thread_id"] for p in async_places}
    assert max(p["finished_at"] for p in async_places) < sync_place["finished_at"]


@pytest.mark.parametrize("pool", IN_PROCESS_POOLS)
def test_async_def_task_runs_on_every_pool(
    pool: str, client: Celery, worker_factory: Callable[..., WorkerProcess]
) -> None:
    result = client.send_task("pool.awhere")
    worker = start_pool(worker_factory, pool, 2)
    place = result.get(timeout=20)
    assert place["pid"] == worker.pid
    assert place["pool"] == pool


# connections
@pytest.mark.parametrize("pool", IN_PROCESS_POOLS)
def test_worker_redis_connections_all_belong_to_the_main_process(
    pool: str,
    client: Celery,
    redis_server: RedisServer,
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    worker = start_pool(worker_factory, pool, 4)
    client.send_task("pool.where").get(timeout=20)
    admin = redis_server.client(0)
    process = psutil.Process(worker.pid)

    def held_by_worker() -> set[str]:
        return {
            f"{conn.laddr.ip}:{conn.laddr.port}"
            for conn in process.net_connections(kind="tcp")
            if conn.raddr and conn.raddr.port == redis_server.port
        }

    def named_as_worker() -> dict[str, str]:
        return {
            entry["addr"]: entry["name"]
            for entry in admin.client_list()
            if entry["name"].startswith("celeriac.worker.")
        }

    # the worker may still be opening a connection (its first idle wait opens two): compare
    # the two views until they agree; a connection held elsewhere would never let them
    wait_until(lambda: held_by_worker() == set(named_as_worker()))
    names = set(named_as_worker().values())
    assert process.children(recursive=True) == []
    assert {name.split(":")[0] for name in names} == {f"celeriac.worker.{worker.pid}"}
    assert {"results", "watch", "wake"} <= {name.partition(":")[2] for name in names}


# shutdown
@pytest.mark.parametrize("pool", IN_PROCESS_POOLS)
def test_warm_shutdown_lets_the_running_task_finish(
    pool: str, client: Celery, worker_factory: Callable[..., WorkerProcess]
) -> None:
    worker = start_pool(worker_factory, pool, 2)
    result = client.send_task(slow_task(pool), (1.0,))
    worker.wait_for_log(f"pool_tasks: started {result.id}")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout_s=20) == 0
    assert result.get(timeout=5) == "finished"


@pytest.mark.parametrize("pool", IN_PROCESS_POOLS)
def test_cold_shutdown_exits_without_finishing_the_running_task(
    pool: str, client: Celery, worker_factory: Callable[..., WorkerProcess]
) -> None:
    worker = start_pool(worker_factory, pool, 2)
    result = client.send_task(slow_task(pool), (60.0,))
    worker.wait_for_log(f"pool_tasks: started {result.id}")
    worker.signal(signal.SIGQUIT)
    assert worker.wait(timeout_s=20) == 0
    assert result.state == "PENDING"


@pytest.mark.parametrize(
    "pool",
    [pool_param(pool) for pool in IN_PROCESS_POOLS],
)
def test_cold_shutdown_returns_the_running_acks_late_message_to_its_queue(
    pool: str,
    client: Celery,
    redis_server: RedisServer,
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    worker = start_pool(worker_factory, pool, 2)
    result = client.send_task(slow_task(pool), (60.0,))
    worker.wait_for_log(f"pool_tasks: started {result.id}")
    worker.signal(signal.SIGQUIT)
    worker.wait(timeout_s=20)
    assert client.broker.queue_length("celery") == 1
    assert redis_server.client(0).hlen("unacked") == 0
