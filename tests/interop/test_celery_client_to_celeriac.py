"""A real Celery 5 client sends; a celeriac solo worker runs; the Celery client reads."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime

import celery
import orjson
import pytest
import redis

from tests.support.workers import WorkerProcess

WAIT_S = 15.0


@pytest.fixture
def worker(worker_factory: Callable[..., WorkerProcess]) -> WorkerProcess:
    return worker_factory("core_tasks", "-P", "solo")


def test_positional_arguments_reach_the_celeriac_worker(
    worker: WorkerProcess, celery_client: celery.Celery
) -> None:
    assert celery_client.send_task("core.add", (2, 3)).get(timeout=WAIT_S) == 5


def test_keyword_arguments_reach_the_celeriac_worker(
    worker: WorkerProcess, celery_client: celery.Celery
) -> None:
    result = celery_client.send_task("core.add", kwargs={"x": 2, "y": 40})
    assert result.get(timeout=WAIT_S) == 42


def test_keyword_only_arguments_reach_the_celeriac_worker(
    worker: WorkerProcess, celery_client: celery.Celery
) -> None:
    result = celery_client.send_task("core.kwonly", (1,), {"b": 2})
    assert result.get(timeout=WAIT_S) == [1, 2, 3]


def test_nested_and_non_ascii_values_round_trip(
    worker: WorkerProcess, celery_client: celery.Celery
) -> None:
    args = ["héllo ✓ 日本 🥕", [1, [2, [3, None]]], {"ü": {"deep": [True, 2.5, -7]}}]
    kwargs = {"clé": "välue", "empty": {}, "list": []}
    result = celery_client.send_task("core.echo", args, kwargs)
    assert result.get(timeout=WAIT_S) == {"args": args, "kwargs": kwargs}


def test_builtin_exception_reaches_the_celery_client_with_type_and_message(
    worker: WorkerProcess, celery_client: celery.Celery
) -> None:
    result = celery_client.send_task("core.fail_builtin", ("bad value",))
    with pytest.raises(ValueError, match="bad value"):
        result.get(timeout=WAIT_S)


def test_custom_exception_reaches_the_celery_client_with_its_name_and_args(
    worker: WorkerProcess, celery_client: celery.Celery
) -> None:
    result = celery_client.send_task("core.fail", ("custom", 42))
    with pytest.raises(Exception) as caught:
        result.get(timeout=WAIT_S)
    assert type(caught.value).__name__ == "CustomError"
    assert caught.value.args == ("custom", 42)


def test_failed_task_state_is_failure_for_the_celery_client(
    worker: WorkerProcess, celery_client: celery.Celery
) -> None:
    result = celery_client.send_task("core.fail_builtin", ("bad value",))
    result.get(timeout=WAIT_S, propagate=False)
    assert result.state == "FAILURE"
    assert "ValueError: bad value" in (result.traceback or "")


def test_countdown_delays_the_run_on_the_celeriac_worker(
    worker: WorkerProcess, celery_client: celery.Celery
) -> None:
    sent_at = time.time()
    result = celery_client.send_task("core.add", (2, 3), countdown=2)
    assert result.get(timeout=WAIT_S) == 5
    done = result.date_done
    assert isinstance(done, datetime)
    assert done.timestamp() >= sent_at + 2


def test_task_routed_by_celery_task_routes_runs_on_a_worker_of_that_queue(
    worker_factory: Callable[..., WorkerProcess], celery_client: celery.Celery
) -> None:
    worker_factory("core_tasks", "-P", "solo", "-Q", "routed")
    assert celery_client.send_task("core.routed.ping").get(timeout=WAIT_S) == "pong"


def test_explicit_queue_from_the_celery_client_reaches_a_worker_of_that_queue(
    worker_factory: Callable[..., WorkerProcess], celery_client: celery.Celery
) -> None:
    worker_factory("core_tasks", "-P", "solo", "-Q", "special")
    result = celery_client.send_task("core.add", (1, 1), queue="special")
    assert result.get(timeout=WAIT_S) == 2


def test_unknown_task_id_stays_pending_for_the_celery_client(
    worker: WorkerProcess, celery_client: celery.Celery
) -> None:
    assert celery_client.AsyncResult(str(uuid.uuid4())).state == "PENDING"


def test_result_with_celeriacs_place_field_reads_cleanly_in_the_celery_client(
    worker: WorkerProcess, celery_client: celery.Celery, backend_url: str
) -> None:
    result = celery_client.send_task("core.add", (2, 3))
    assert result.get(timeout=WAIT_S) == 5
    with redis.Redis.from_url(backend_url) as results:
        meta = orjson.loads(results.get(f"celery-task-meta-{result.id}"))
    assert "place" in meta
    assert (result.state, result.result, result.successful()) == ("SUCCESS", 5, True)
