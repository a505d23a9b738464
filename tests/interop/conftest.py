"""Interop fixtures: a real Celery client in this process, and a celeriac client."""

from __future__ import annotations

from collections.abc import Iterator

import celery
import pytest

import celeriac

# what tests/support/core_tasks.py and celery_core_tasks.py route, on both sides
ROUTES = {"core.routed.*": {"queue": "routed"}}
CELERY_WORKER_FLAGS = ("-l", "info", "--without-mingle", "--without-gossip", "--without-heartbeat")


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
def celeriac_client(redis_url: str, backend_url: str) -> Iterator[celeriac.Celery]:
    app = celeriac.Celery("interop_client", broker=redis_url, backend=backend_url)
    app.conf.task_routes = ROUTES
    yield app
    app.close()
