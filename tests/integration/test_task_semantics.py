"""Task semantics on a real worker over real Redis: request fields, retry keeping headers and
priority and replacing arguments, class-based and pydantic tasks, results that are results,
Reject, custom remote-control commands, and result subscriptions dropped with their
AsyncResult."""

from __future__ import annotations

import gc
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from celeriac import Celery
from celeriac.errors import RemoteTaskError, TaskRevokedError
from celeriac.result import AsyncResult, GroupResult, result_from_tuple
from tests.support.redis_server import RedisServer
from tests.support.workers import WorkerProcess, start_celeriac_worker

WAIT_S = 30.0
BROKER_DB, BACKEND_DB = 10, 11


@dataclass
class Stack:
    client: Celery
    worker: WorkerProcess
    other: WorkerProcess  # a second worker, of another queue
    broker: redis.Redis
    results: redis.Redis


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer) -> Iterator[Stack]:
    redis_server.client(BROKER_DB).flushdb()
    redis_server.client(BACKEND_DB).flushdb()
    broker_url, backend_url = redis_server.url(BROKER_DB), redis_server.url(BACKEND_DB)
    worker = start_celeriac_worker(
        "semantics_tasks", broker_url, "-P", "solo", "-n", "sem@host", backend_url=backend_url
    )
    try:
        other = start_celeriac_worker(
            "semantics_tasks",
            broker_url,
            "-P",
            "threads",
            "-Q",
            "other",
            "-n",
            "other@host",
            backend_url=backend_url,
        )
    except BaseException:
        worker.stop()
        raise
    client = Celery("sem_client", broker=broker_url, backend=backend_url)
    try:
        yield Stack(
            client, worker, other, redis_server.client(BROKER_DB), redis_server.client(BACKEND_DB)
        )
    finally:
        worker.stop()
        other.stop()
        client.close()


# request fields
def test_request_has_celerys_fields_with_the_senders_values(stack: Stack) -> None:
    result = stack.client.send_task(
        "sem.fields",
        (1,),
        {"b": 2},
        headers={"custom": "x"},
        priority=5,
        time_limit=30,
        soft_time_limit=20,
        expires=60,
    )
    fields = result.get(timeout=WAIT_S)
    assert fields["timelimit"] == [30, 20]
    assert (fields["time_limit"], fields["soft_time_limit"]) == (30, 20)
    assert fields["headers"] == {"custom": "x"}
    assert fields["custom_attribute"] == "x"
    info = fields["delivery_info"]
    assert (info["priority"], info["exchange"], info["routing_key"]) == (5, "", "celery")
    assert info["redelivered"] is False
    assert fields["properties"]["priority"] == 5
    assert fields["properties"]["correlation_id"] == result.id
    assert fields["correlation_id"] == result.id
    assert fields["reply_to"]
    assert fields["expires"]
    assert (fields["argsrepr"], fields["kwargsrepr"]) == ("(1,)", "{'b': 2}")
    assert (fields["replaced_task_nesting"], fields["stamps"]) == (0, {})
    assert (fields["is_eager"], fields["called_directly"]) == (False, False)
    missing = [name for name, value in fields.items() if value == "<missing>"]
    assert missing == []


def test_request_headers_are_none_without_custom_headers(stack: Stack) -> None:
    fields = stack.client.send_task("sem.fields").get(timeout=WAIT_S)
    assert fields["headers"] is None
    assert fields["timelimit"] == [None, None]
    assert fields["delivery_info"]["priority"] == 0


# retry
def test_retry_keeps_custom_headers_and_priority(stack: Stack) -> None:
    result = stack.client.send_task("sem.retry_fields", headers={"custom": "kept"}, priority=7)
    fields = result.get(timeout=WAIT_S)
    assert fields["retries"] == 1
    assert fields["headers"] == {"custom": "kept"}
    assert fields["delivery_info"]["priority"] == 7


def test_retry_with_kwargs_only_takes_over_the_positional_args_of_those_names(
    stack: Stack,
) -> None:
    # Celery's rule: the new keywords replace the old values in place, so no parameter
    # gets two values ("multiple values for argument")
    result = stack.client.send_task("sem.retry_to_kwargs", (1, 2))
    assert result.get(timeout=WAIT_S) == [10, 20, [10, 20], {}]


def test_retry_with_args_only_drops_the_keywords_they_fill(stack: Stack) -> None:
    result = stack.client.send_task("sem.retry_to_args", kwargs={"x": 1, "y": 2})
    assert result.get(timeout=WAIT_S) == [2, 3, [2, 3], {}]


# class-based tasks
def test_class_based_task_registered_with_register_task_runs(stack: Stack) -> None:
    assert stack.client.send_task("sem.class_multiply", (6, 7)).get(timeout=WAIT_S) == 42
    # and a decorated task whose base class overrides __call__ goes through it
    assert stack.client.send_task("sem.wrapped", (1,)).get(timeout=WAIT_S) == {"wrapped": 2}


def test_class_based_task_autoretries_with_its_class_options(stack: Stack) -> None:
    assert stack.client.send_task("sem.class_autoretry", (2,)).get(timeout=WAIT_S) == 2


def test_class_based_task_fails_after_its_class_max_retries(stack: Stack) -> None:
    result = stack.client.send_task("sem.class_autoretry", (9,))
    with pytest.raises(KeyError, match="attempt 3"):
        result.get(timeout=WAIT_S)


# results that are results
def test_task_returning_an_asyncresult_stores_a_reference_the_client_follows(
    stack: Stack,
) -> None:
    value = stack.client.send_task("sem.returns_result", (2, 3)).get(timeout=WAIT_S)
    followed = result_from_tuple(value, stack.client)
    assert followed.get(timeout=WAIT_S) == 5


def test_task_returning_a_groupresult_stores_a_reference_the_client_follows(
    stack: Stack,
) -> None:
    value = stack.client.send_task("sem.returns_group", (3,)).get(timeout=WAIT_S)
    followed = result_from_tuple(value, stack.client)
    assert isinstance(followed, GroupResult)
    assert followed.get(timeout=WAIT_S) == [0, 2, 4]


# errors
def test_reject_without_requeue_stores_a_failure_the_client_reads(stack: Stack) -> None:
    result = stack.client.send_task("sem.reject", ("not today",))
    with pytest.raises(Exception) as caught:
        result.get(timeout=WAIT_S)
    assert type(caught.value).__name__ == "Reject"
    assert result.state == "FAILURE"


# pydantic tasks
def test_pydantic_task_validates_dict_arguments_and_dumps_its_model_result(
    stack: Stack,
) -> None:
    result = stack.client.send_task("sem.pyd_shift", ({"x": 1, "y": 2}, 10))
    assert result.get(timeout=WAIT_S) == {"x": 11, "y": 12}


def test_pydantic_task_leaves_an_optional_model_none(stack: Stack) -> None:
    assert stack.client.send_task("sem.pyd_optional").get(timeout=WAIT_S) == "NoneType"
    result = stack.client.send_task("sem.pyd_optional", ({"x": 1, "y": 1},))
    assert result.get(timeout=WAIT_S) == "Point"


def test_pydantic_strict_refuses_a_string_for_an_int(stack: Stack) -> None:
    assert stack.client.send_task("sem.pyd_strict", ({"x": 4, "y": 0},)).get(timeout=WAIT_S) == 4
    result = stack.client.send_task("sem.pyd_strict", ({"x": "4", "y": 0},))
    with pytest.raises(RemoteTaskError, match="valid integer"):
        result.get(timeout=WAIT_S)
    assert result.state == "FAILURE"


def test_pydantic_validation_error_fails_the_task_not_the_worker(stack: Stack) -> None:
    bad = stack.client.send_task("sem.pyd_shift", ({"x": "not a number"}, 1))
    with pytest.raises(RemoteTaskError, match="validation error"):
        bad.get(timeout=WAIT_S)
    assert stack.worker.process.poll() is None
    assert stack.client.send_task("sem.add", (1, 1)).get(timeout=WAIT_S) == 2


def test_pydantic_context_and_dump_kwargs_are_used(stack: Stack) -> None:
    result = stack.client.send_task("sem.pyd_context", ({"value": 2},))
    assert result.get(timeout=WAIT_S) == 6
    assert stack.client.send_task("sem.pyd_dump", (5,)).get(timeout=WAIT_S) == {"x": 5}


# custom remote-control commands
def test_custom_control_command_answers_a_broadcast(stack: Stack) -> None:
    replies = stack.client.control.broadcast(
        "sem_bump", arguments={"n": 3}, destination=["sem@host"], reply=True, timeout=2.0
    )
    assert replies == [{"sem@host": {"ok": "bumped by 3"}}]


def test_custom_inspect_command_answers_inspect_request(stack: Stack) -> None:
    inspect = stack.client.control.inspect(destination=["sem@host"], timeout=2.0)
    assert inspect._request("sem_where") == {"sem@host": {"hostname": "sem@host", "has_app": True}}


def test_custom_inspect_command_registered_under_its_name(stack: Stack) -> None:
    replies = stack.client.control.broadcast(
        "sem_where", destination=["sem@host"], reply=True, timeout=2.0
    )
    assert replies == [{"sem@host": {"hostname": "sem@host", "has_app": True}}]


def test_custom_command_that_raises_answers_with_an_error(stack: Stack) -> None:
    replies = stack.client.control.broadcast(
        "sem_broken_alias", destination=["sem@host"], reply=True, timeout=2.0
    )
    assert replies is not None and len(replies) == 1
    assert "this command is broken" in replies[0]["sem@host"]["error"]


# result subscriptions
def _subscribers(client: redis.Redis, task_id: str) -> int:
    channel = f"celery-task-meta-{task_id}"
    counts = dict(client.pubsub_numsub(channel))
    return int(counts.get(channel.encode(), 0))


def test_result_dropped_before_its_value_arrives_leaves_no_subscription(stack: Stack) -> None:
    result = stack.client.send_task("sem.add", (1, 1), countdown=30)
    task_id = result.id
    with pytest.raises(TimeoutError):
        result.get(timeout=0.2)
    assert _subscribers(stack.results, task_id) == 1  # the wait did subscribe
    del result
    gc.collect()
    assert _subscribers(stack.results, task_id) == 0
    channels = stack.results.pubsub_channels(f"celery-task-meta-{task_id}")
    assert channels == []
    # a new wait on the same id subscribes again and gets the value
    stack.client.control.revoke(task_id)  # not worth 30 s: REVOKED is a value too
    with pytest.raises(TaskRevokedError):
        stack.client.AsyncResult(task_id).get(timeout=WAIT_S)


# revoking
def _state_becomes(result: AsyncResult, state: str) -> bool:
    """Whether the stored state becomes *state* within WAIT_S (read afresh each time)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if result.app.AsyncResult(result.id).state == state:
            return True
        time.sleep(0.02)
    return False


def test_revoking_a_task_another_worker_started_marks_it_revoked(stack: Stack) -> None:
    """Celery's rule: each worker that is not running it stores REVOKED at once if the task
    has not started as far as the backend knows; the worker running it lets it finish, and
    stores its outcome then."""
    key, tracked_key = str(uuid.uuid4()), str(uuid.uuid4())
    result = stack.client.send_task("sem.block", (key,))
    tracked = stack.client.send_task("sem.block_tracked", (tracked_key,), queue="other")
    for started in (key, tracked_key):
        assert stack.broker.blpop([f"{started}:started"], timeout=WAIT_S) is not None
    assert stack.client.AsyncResult(tracked.id).state == "STARTED"
    stack.client.control.revoke([result.id, tracked.id])
    assert _state_becomes(result, "REVOKED")
    stack.client.control.ping(timeout=1.0)  # every worker handled the revoke before this
    assert stack.client.AsyncResult(tracked.id).state == "STARTED"  # known to have started
    for started in (key, tracked_key):
        stack.broker.rpush(f"{started}:go", 1)
    assert _state_becomes(result, "SUCCESS")
    assert result.result == "released"
    assert tracked.get(timeout=WAIT_S) == "released"


def test_revoking_a_queued_task_marks_it_revoked_before_any_worker_takes_it(
    stack: Stack,
) -> None:
    result = stack.client.send_task("sem.add", (1, 1), queue="nobody_reads_this")
    stack.client.control.revoke(result.id)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=WAIT_S)
