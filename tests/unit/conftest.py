"""Unit-test fixtures: apps on the in-process ``memory://`` broker and backend."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from celeriac import Celery


@pytest.fixture
def memory_url() -> str:
    """A ``memory://`` URL no other test shares, so queues start empty."""
    return f"memory://unit-{uuid.uuid4().hex}"


@pytest.fixture
def app(memory_url: str) -> Iterator[Celery]:
    application = Celery("unit", broker=memory_url, backend=memory_url)
    yield application
    application.close()
