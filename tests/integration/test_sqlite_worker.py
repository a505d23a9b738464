"""A real celeriac worker process on the embedded SQLite broker and backend, no server at all."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from celeriac import Celery
from tests.support.workers import WorkerProcess, start_celeriac_worker


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/celeriac.sqlite3"


@pytest.fixture
def sqlite_worker(sqlite_url: str) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers on the test's SQLite file; every one is stopped at teardown."""
    started: list[WorkerProcess] = []

    def start(*args: str) -> WorkerProcess:
        worker = start_celeriac_worker("core_tasks", sqlite_url, *args, backend_url=sqlite_url)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
        worker.log_path.unlink(missing_ok=True)


@pytest.fixture
def client(sqlite_url: str) -> Iterator[Celery]:
    app = Celery("client", broker=sqlite_url, backend=sqlite_url)
    yield app
    app.close()


def test_solo_worker_on_sqlite_runs_add_and_get_returns_its_value(
    sqlite_worker: Callable[..., WorkerProcess], client: Celery
) -> None:
    sqlite_worker("-P", "solo")
    result = client.send_task("core.add", (2, 3))
    assert result.get(timeout=20) == 5
    assert result.state == "SUCCESS"


def test_countdown_task_on_sqlite_runs_once_due(
    sqlite_worker: Callable[..., WorkerProcess], client: Celery
) -> None:
    sqlite_worker("-P", "solo")
    sent_at = time.monotonic()
    result = client.send_task("core.add", (2, 3), countdown=1)
    assert result.get(timeout=20) == 5
    assert time.monotonic() - sent_at >= 0.9


def test_prefork_worker_on_sqlite_runs_tasks_in_its_children(
    sqlite_worker: Callable[..., WorkerProcess], client: Celery
) -> None:
    worker = sqlite_worker("-P", "prefork", "-c", "2")
    pids = {client.send_task("core.pid").get(timeout=20) for _ in range(4)}
    assert pids and worker.pid not in pids
    assert pids <= {child.pid for child in worker.children()}
