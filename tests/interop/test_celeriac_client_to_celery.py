"""A celeriac client sends; a real Celery 5 solo worker runs; the celeriac client reads."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

import celeriac
from celeriac.errors import RemoteTaskError
from tests.interop.peers import CELERY_WORKER_FLAGS
from tests.support.workers import WorkerProcess, start_celery_worker

WAIT_S = 15.0


@pytest.fixture
def worker(celery_worker_factory: Callable[..., WorkerProcess]) -> WorkerProcess:
    return celery_worker_factory("celery_core_tasks", "-P", "solo", *CELERY_WORKER_FLAGS)


def test_positional_arguments_reach_the_celery_worker(
    worker: WorkerProcess, celeriac_client: celeriac.Celery
) -> None:
    assert celeriac_client.send_task("core.add", (2, 3)).get(timeout=WAIT_S) == 5


def test_keyword_arguments_reach_the_celery_worker(
    worker: WorkerProcess, celeriac_client: celeriac.Celery
) -> None:
    result = celeriac_client.send_task("core.add", kwargs={"x": 2, "y": 40})
    assert result.get(timeout=WAIT_S) == 42


def test_keyword_only_arguments_reach_the_celery_worker(
    worker: WorkerProcess, celeriac_client: celeriac.Celery
) -> None:
    result = celeriac_client.send_task("core.kwonly", (1,), {"b": 2})
    assert result.get(timeout=WAIT_S) == [1, 2, 3]


def test_nested_and_non_ascii_values_round_trip(
    worker: WorkerProcess, celeriac_client: celeriac.Celery
) -> None:
    args = ["héllo ✓ 日本 🥕", [1, [2, [3, None]]], {"ü": {"deep": [True, 2.5, -7]}}]
    kwargs = {"clé": "välue", "empty": {}, "list": []}
    result = celeriac_client.send_task("core.echo", args, kwargs)
    assert result.get(timeout=WAIT_S) == {"args": args, "kwargs": kwargs}


def test_builtin_exception_from_celery_is_raised_with_its_type_and_message(
    worker: WorkerProcess, celeriac_client: celeriac.Celery
) -> None:
    result = celeriac_client.send_task("core.fail_builtin", ("bad value",))
    with pytest.raises(ValueError, match="bad value"):
        result.get(timeout=WAIT_S)


def test_custom_exception_from_celery_is_raised_with_its_name_and_args(
    worker: WorkerProcess, celeriac_client: celeriac.Celery
) -> None:
    # the test process cannot import the worker's `core_tasks`: a stand-in named like it
    result = celeriac_client.send_task("core.fail", ("custom", 42))
    with pytest.raises(RemoteTaskError) as caught:
        result.get(timeout=WAIT_S)
    assert type(caught.value).__name__ == "CustomError"
    assert caught.value.args == ("custom", 42)


def test_failed_task_from_celery_has_state_failure_and_traceback(
    worker: WorkerProcess, celeriac_client: celeriac.Celery
) -> None:
    result = celeriac_client.send_task("core.fail_builtin", ("bad value",))
    result.get(timeout=WAIT_S, propagate=False)
    assert result.state == "FAILURE"
    assert "ValueError: bad value" in (result.traceback or "")


def test_countdown_delays_the_run_on_the_celery_worker(
    worker: WorkerProcess, celeriac_client: celeriac.Celery
) -> None:
    sent_at = time.time()
    result = celeriac_client.send_task("core.add", (2, 3), countdown=2)
    assert result.get(timeout=WAIT_S) == 5
    assert result.date_done is not None
    assert result.date_done.timestamp() >= sent_at + 2


def test_task_routed_by_celeriac_task_routes_runs_on_a_celery_worker_of_that_queue(
    celery_worker_factory: Callable[..., WorkerProcess], celeriac_client: celeriac.Celery
) -> None:
    celery_worker_factory("celery_core_tasks", "-P", "solo", "-Q", "routed", *CELERY_WORKER_FLAGS)
    assert celeriac_client.send_task("core.routed.ping").get(timeout=WAIT_S) == "pong"


def test_explicit_queue_from_celeriac_reaches_a_celery_worker_of_that_queue(
    celery_worker_factory: Callable[..., WorkerProcess], celeriac_client: celeriac.Celery
) -> None:
    celery_worker_factory("celery_core_tasks", "-P", "solo", "-Q", "special", *CELERY_WORKER_FLAGS)
    result = celeriac_client.send_task("core.add", (1, 1), queue="special")
    assert result.get(timeout=WAIT_S) == 2


def test_priority_message_from_celeriac_runs_on_the_celery_worker(
    worker: WorkerProcess, celeriac_client: celeriac.Celery
) -> None:
    result = celeriac_client.send_task("core.add", (4, 5), priority=9)
    assert result.get(timeout=WAIT_S) == 9


def test_unknown_task_id_stays_pending_for_the_celeriac_client(
    worker: WorkerProcess, celeriac_client: celeriac.Celery
) -> None:
    assert celeriac_client.AsyncResult(str(uuid.uuid4())).state == "PENDING"


def test_unregistered_task_fails_with_not_registered_on_the_celery_worker(
    worker: WorkerProcess, celeriac_client: celeriac.Celery
) -> None:
    result = celeriac_client.send_task("core.nope", ())
    with pytest.raises(KeyError) as caught:
        result.get(timeout=WAIT_S)
    assert type(caught.value).__name__ == "NotRegistered"


def test_round_trips_with_broker_and_results_on_one_database(redis_url: str) -> None:
    """The default set-up (no ``result_backend``: results go where the broker is), with
    a Celery worker storing them."""
    worker = start_celery_worker(
        "celery_core_tasks", redis_url, "-P", "solo", *CELERY_WORKER_FLAGS, backend_url=redis_url
    )
    app = celeriac.Celery("interop_client", broker=redis_url)
    try:
        for i in range(30):
            assert app.send_task("core.add", (i, i)).get(timeout=WAIT_S) == 2 * i
    finally:
        app.close()
        worker.stop()
