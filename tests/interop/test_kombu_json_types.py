"""Values plain JSON cannot hold, which kombu's JSON carries as ``{"__type__", "__value__"}``:
datetime, date, time, Decimal and bytes reach the task as themselves, in both directions."""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Callable
from typing import Any

import celery
import pytest

import celeriac
from tests.interop.peers import CELERY_WORKER_FLAGS
from tests.support.workers import WorkerProcess

WAIT_S = 15.0
VALUES: list[Any] = [
    datetime.datetime(2030, 1, 2, 3, 4, 5, 600000, tzinfo=datetime.timezone.utc),
    datetime.date(2030, 1, 2),
    datetime.time(3, 4, 5),
    decimal.Decimal("1.10"),
    b"raw bytes",
]
TYPE_NAMES = ["datetime", "date", "time", "Decimal", "bytes"]


@pytest.fixture
def celeriac_worker(worker_factory: Callable[..., WorkerProcess]) -> WorkerProcess:
    return worker_factory("core_tasks", "-P", "solo")


@pytest.fixture
def celery_worker(celery_worker_factory: Callable[..., WorkerProcess]) -> WorkerProcess:
    return celery_worker_factory("celery_core_tasks", "-P", "solo", *CELERY_WORKER_FLAGS)


def test_celery_client_values_reach_a_celeriac_task_as_their_own_types(
    celeriac_worker: WorkerProcess, celery_client: celery.Celery
) -> None:
    result = celery_client.send_task("core.arg_types", VALUES, {"when": VALUES[0]})
    assert result.get(timeout=WAIT_S) == {"args": TYPE_NAMES, "kwargs": {"when": "datetime"}}


def test_celeriac_client_values_reach_a_celery_task_as_their_own_types(
    celery_worker: WorkerProcess, celeriac_client: celeriac.Celery
) -> None:
    result = celeriac_client.send_task("core.arg_types", VALUES, {"when": VALUES[0]})
    assert result.get(timeout=WAIT_S) == {"args": TYPE_NAMES, "kwargs": {"when": "datetime"}}


def test_celeriac_worker_results_reach_the_celery_client_as_their_own_types(
    celeriac_worker: WorkerProcess, celery_client: celery.Celery
) -> None:
    result = celery_client.send_task("core.echo", VALUES)
    assert result.get(timeout=WAIT_S) == {"args": VALUES, "kwargs": {}}


def test_celery_worker_results_reach_the_celeriac_client_as_their_own_types(
    celery_worker: WorkerProcess, celeriac_client: celeriac.Celery
) -> None:
    result = celeriac_client.send_task("core.echo", VALUES)
    assert result.get(timeout=WAIT_S) == {"args": VALUES, "kwargs": {}}
