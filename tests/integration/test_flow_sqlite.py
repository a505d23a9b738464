"""Flow control on the embedded SQLite broker, with real prefork workers sharing one file:
the global bucket and the slot leases are taken in transactions, so they hold across
workers as on Redis."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from celeriac import Celery
from tests.integration.test_flow_redis import max_in_window, max_overlap, rate_of
from tests.support.workers import WorkerProcess, start_celeriac_worker


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/celeriac.sqlite3"


@pytest.fixture
def workers(sqlite_url: str) -> Iterator[Callable[[int], list[WorkerProcess]]]:
    started: list[WorkerProcess] = []

    def start(count: int) -> list[WorkerProcess]:
        new = [
            start_celeriac_worker(
                "flow_tasks",
                sqlite_url,
                "-n",
                f"flowsql{i}@%h",
                "-P",
                "prefork",
                "-c",
                "2",
                backend_url=sqlite_url,
                wait_ready=False,
            )
            for i in range(count)
        ]
        started.extend(new)
        for worker in new:
            worker.wait_for_log("ready.", timeout_s=30)
        return new

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def client(sqlite_url: str) -> Iterator[Celery]:
    app = Celery("client", broker=sqlite_url, backend=sqlite_url)
    yield app
    app.close()


def runs(sqlite_url: str, name: str) -> list[tuple[float, float, int, str]]:
    path = sqlite_url.split("sqlite:///", 1)[1] + ".runs"
    with sqlite3.connect(path) as conn:
        lines = [row[0] for row in conn.execute("SELECT line FROM runs WHERE name = ?", (name,))]
    found = []
    for line in lines:
        start, end, pid, key = line.split()
        found.append((float(start), float(end), int(pid), key))
    return sorted(found)


def test_global_rate_limit_holds_across_workers_on_sqlite(
    workers: Callable[[int], list[WorkerProcess]], client: Celery, sqlite_url: str
) -> None:
    workers(2)
    count = 25
    results = [client.send_task("flow.global_rate", (i,)) for i in range(count)]
    assert sorted(result.get(timeout=60) for result in results) == list(range(count))
    starts = [run[0] for run in runs(sqlite_url, "global_rate")]
    assert len(starts) == count
    rate = rate_of(starts)
    print(f"SQLite global 5/s over 2 workers: {rate:.2f}/s")
    assert max_in_window(starts, 2.0) <= 5 * 2 + 1
    assert abs(rate - 5.0) <= 0.5


def test_max_concurrency_and_unique_on_sqlite(
    workers: Callable[[int], list[WorkerProcess]], client: Celery, sqlite_url: str
) -> None:
    workers(2)
    results = [client.send_task("flow.capped", (i, 0.3)) for i in range(8)]
    assert sorted(result.get(timeout=60) for result in results) == list(range(8))
    overlap = max_overlap([(run[0], run[1]) for run in runs(sqlite_url, "capped")])
    print(f"SQLite max_concurrency=2 over 2 workers x 2: max overlap {overlap}")
    assert overlap == 2

    # the client declares the task as the worker does: the lock is the task name's and key's
    @client.task(name="flow.unique_job", unique_for=60, unique_key="{key}")
    def unique_job(key: str, sleep_s: float = 2.0) -> str:
        return key  # runs on the worker

    ids: list[str] = []

    def send() -> None:
        for _ in range(5):
            ids.append(unique_job.apply_async(("s",)).id)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 1
    assert client.AsyncResult(ids[0]).get(timeout=20) == "s"
    assert len(runs(sqlite_url, "unique_job")) == 1
