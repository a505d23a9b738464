"""The seed's prefork column, measured: a manager, N children that each consume on their own
connections, tasks running in children in parallel, code inherited rather than re-imported."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from celeriac import Celery, TimeLimitExceeded
from celeriac.errors import WorkerLostError
from tests.support.redis_server import RedisServer
from tests.support.workers import WorkerProcess

Factory = Callable[..., WorkerProcess]


@pytest.fixture
def client(redis_url: str, backend_url: str) -> Celery:
    return Celery("client", broker=redis_url, backend=backend_url)


def wait_for_children(worker: WorkerProcess, count: int, timeout_s: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while True:
        pids = [p.pid for p in worker.children()]
        if len(pids) == count:
            return pids
        assert time.monotonic() < deadline, f"expected {count} children, saw {pids}"
        time.sleep(0.02)


def stored_place(result: Any) -> dict[str, Any]:
    """Where the task ran, as stored with its result (with start and end times)."""
    result.get(timeout=15)
    place = result.place
    assert place is not None
    return dict(place)


def overlaps(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return bool(a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"])


def test_prefork_is_a_manager_with_n_children(worker_factory: Factory) -> None:
    worker = worker_factory("prefork_tasks", "-P", "prefork", "-c", "3")
    children = wait_for_children(worker, 3)
    for pid in children:
        assert psutil.Process(pid).ppid() == worker.pid


def test_n_slow_tasks_run_at_once_in_n_different_children(
    worker_factory: Factory, client: Celery
) -> None:
    worker = worker_factory("prefork_tasks", "-P", "prefork", "-c", "3")
    results = [client.send_task("pf.place", (0.6,)) for _ in range(3)]
    places = [stored_place(r) for r in results]
    assert len({p["pid"] for p in places}) == 3
    assert {p["ppid"] for p in places} == {worker.pid}
    assert all(p["pool"] == "prefork" and p["child_index"] in (0, 1, 2) for p in places)
    assert all(overlaps(a, b) for a in places for b in places if a is not b)


def test_cpu_bound_tasks_run_in_parallel_in_different_processes(
    worker_factory: Factory, client: Celery
) -> None:
    worker_factory("prefork_tasks", "-P", "prefork", "-c", "2")
    results = [client.send_task("pf.spin", (0.5,)) for _ in range(2)]
    first, second = (stored_place(r) for r in results)
    assert first["pid"] != second["pid"]
    assert overlaps(first, second)


def test_each_child_has_its_own_connections_and_the_manager_its_own(
    worker_factory: Factory, client: Celery, redis_server: RedisServer
) -> None:
    worker = worker_factory("prefork_tasks", "-P", "prefork", "-c", "2")
    children = wait_for_children(worker, 2)
    results = [client.send_task("pf.place", (0.5,)) for _ in range(2)]
    ran_in = {r.get(timeout=15)["pid"] for r in results}
    assert ran_in == set(children)
    names = {c["name"] for c in redis_server.client(0).client_list()}
    names |= {c["name"] for c in redis_server.client(1).client_list()}
    for index, pid in _child_indexes(names, children).items():
        assert f"celeriac.child{index}.{pid}" in names
        assert f"celeriac.child{index}.{pid}:results" in names
    assert f"celeriac.worker.{worker.pid}" in names


def _child_indexes(names: set[str], pids: list[int]) -> dict[int, int]:
    found = {}
    for name in names:
        if name.startswith("celeriac.child") and ":" not in name:
            index, pid = name.removeprefix("celeriac.child").split(".")
            if int(pid) in pids:
                found[int(index)] = int(pid)
    assert len(found) == len(pids), names
    return found


def test_children_do_not_import_task_modules_again(
    redis_url: str, backend_url: str, tmp_path: Path, client: Celery
) -> None:
    from tests.support.workers import start_celeriac_worker

    log = tmp_path / "imports.log"
    worker = start_celeriac_worker(
        "prefork_tasks",
        redis_url,
        "-P",
        "prefork",
        "-c",
        "2",
        backend_url=backend_url,
        env_extra={"CELERIAC_TEST_IMPORT_LOG": str(log)},
    )
    try:
        results = [client.send_task("pf.place", (0.3,)) for _ in range(2)]
        child_pids = {r.get(timeout=15)["pid"] for r in results}
        imported_by = {int(line) for line in log.read_text().split()}
        assert imported_by == {worker.pid}
        assert not child_pids & imported_by
    finally:
        worker.stop()


def test_a_killed_child_is_replaced_and_the_worker_goes_on(
    worker_factory: Factory, client: Celery
) -> None:
    worker = worker_factory("prefork_tasks", "-P", "prefork", "-c", "2")
    before = wait_for_children(worker, 2)
    os.kill(before[0], signal.SIGKILL)
    worker.wait_for_log(f"(pid {before[0]}) was killed by signal 9")
    after = wait_for_children(worker, 2)
    assert before[0] not in after
    assert client.send_task("pf.pid").get(timeout=10) in after


def test_task_that_kills_its_child_fails_with_worker_lost(
    worker_factory: Factory, client: Celery
) -> None:
    worker = worker_factory("prefork_tasks", "-P", "prefork", "-c", "1")
    with pytest.raises(WorkerLostError, match="signal 9"):
        client.send_task("pf.suicide").get(timeout=10)
    assert isinstance(client.send_task("pf.pid").get(timeout=10), int)
    # early-acked (Celery's default): it failed once and was never delivered again
    assert worker.log().count("while running pf.suicide") == 1


def test_max_tasks_per_child_recycles_children(worker_factory: Factory, client: Celery) -> None:
    worker_factory("prefork_tasks", "-P", "prefork", "-c", "1", "--max-tasks-per-child", "10")
    pids = [client.send_task("pf.pid").get(timeout=10) for _ in range(25)]
    assert pids[:10] == [pids[0]] * 10
    assert pids[10:20] == [pids[10]] * 10
    assert len(set(pids)) == 3


def test_soft_time_limit_raises_inside_the_task(worker_factory: Factory, client: Celery) -> None:
    worker_factory("prefork_tasks", "-P", "prefork", "-c", "1")
    assert client.send_task("pf.soft_catch").get(timeout=10) == "caught"


def test_hard_time_limit_kills_and_replaces_the_child(
    worker_factory: Factory, client: Celery
) -> None:
    worker = worker_factory("prefork_tasks", "-P", "prefork", "-c", "1")
    first = wait_for_children(worker, 1)
    with pytest.raises(TimeLimitExceeded):
        client.send_task("pf.hard").get(timeout=10)
    assert client.send_task("pf.pid").get(timeout=10) != first[0]


def test_worker_time_limit_option_applies_to_every_task(
    worker_factory: Factory, client: Celery
) -> None:
    worker_factory("prefork_tasks", "-P", "prefork", "-c", "1", "--time-limit", "0.4")
    with pytest.raises(TimeLimitExceeded):
        client.send_task("pf.place", (5,)).get(timeout=10)


def test_warm_shutdown_lets_running_tasks_finish(worker_factory: Factory, client: Celery) -> None:
    worker = worker_factory("prefork_tasks", "-P", "prefork", "-c", "2", "-l", "info")
    result = client.send_task("pf.place", (1.0,))
    worker.wait_for_log(f"Task pf.place[{result.id}] received")
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    assert result.get(timeout=5)["pool"] == "prefork"
    assert not worker.children()


def test_cold_shutdown_stops_running_tasks_now(worker_factory: Factory, client: Celery) -> None:
    worker = worker_factory("prefork_tasks", "-P", "prefork", "-c", "1", "-l", "info")
    result = client.send_task("pf.place", (30,))
    worker.wait_for_log(f"Task pf.place[{result.id}] received")
    started = time.monotonic()
    worker.signal(signal.SIGQUIT)
    worker.wait(10)
    assert time.monotonic() - started < 5
    assert result.state != "SUCCESS"
    assert not worker.children()
