"""Fixtures shared by every test folder."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator

import pytest

from tests.support.redis_server import RedisServer, cleanup, start_redis
from tests.support.workers import WorkerProcess, start_celeriac_worker, start_celery_worker


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "brokers(*kinds): run a broker/backend contract test only for these kinds "
        "(memory, sqlite, redis); the others are not collected",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop the parametrizations a ``brokers(...)`` marker excludes: a test that cannot
    apply to a broker (memory:// has no second process) is not a skipped feature."""
    kept, dropped = [], []
    for item in items:
        marker = item.get_closest_marker("brokers")
        callspec = getattr(item, "callspec", None)
        kind = None
        if callspec is not None:
            kind = callspec.params.get("broker_url") or callspec.params.get("backend_kind")
            kind = kind.split("-")[0] if isinstance(kind, str) else kind  # redis-resp2: redis
        if marker is not None and kind is not None and kind not in marker.args:
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port, for the whole session."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed: run .ci/run, or apt-get install redis-server")
    server = start_redis()
    try:
        yield server
    finally:
        cleanup(server)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """Broker URL on an empty server (db 0); results go to db 1 of the same server."""
    redis_server.client(0).flushall()
    yield redis_server.url(0)


@pytest.fixture
def backend_url(redis_server: RedisServer, redis_url: str) -> str:
    return redis_server.url(1)


@pytest.fixture
def worker_factory(redis_url: str, backend_url: str) -> Iterator[Callable[..., WorkerProcess]]:
    """Start celeriac workers on the test's Redis; every one is stopped at teardown."""
    started: list[WorkerProcess] = []

    def start(app: str, *args: str, **kwargs: object) -> WorkerProcess:
        worker = start_celeriac_worker(app, redis_url, *args, backend_url=backend_url, **kwargs)  # type: ignore[arg-type]
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def celery_worker_factory(
    redis_url: str, backend_url: str
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real Celery workers on the test's Redis; every one is stopped at teardown."""
    started: list[WorkerProcess] = []

    def start(app: str, *args: str) -> WorkerProcess:
        worker = start_celery_worker(app, redis_url, *args, backend_url=backend_url)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
