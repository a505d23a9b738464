"""Interop fixtures: a real Celery client in this process, and a celeriac client."""

from __future__ import annotations

from collections.abc import Iterator

import celery
import pytest
import redis

import celeriac
from tests.interop.peers import ROUTES


@pytest.fixture
def celery_client(redis_url: str, backend_url: str) -> Iterator[celery.Celery]:
    """A fresh Celery 5 client app on the test's Redis."""
    app = celery.Celery(
        "interop_client", broker=redis_url, backend=backend_url, set_as_current=False
    )
    app.conf.task_routes = ROUTES
    yield app
    app.close()


@pytest.fixture
def results(backend_url: str) -> Iterator[redis.Redis]:
    """A plain Redis client on the result backend's database, to read what tasks left."""
    client = redis.Redis.from_url(backend_url)
    yield client
    client.close()


@pytest.fixture
def celeriac_client(redis_url: str, backend_url: str) -> Iterator[celeriac.Celery]:
    app = celeriac.Celery("interop_client", broker=redis_url, backend=backend_url)
    app.conf.task_routes = ROUTES
    yield app
    app.close()
