"""Bad input never crashes the worker: crafted messages LPUSHed straight into Redis.

Each kind of malformed message (spec §11) is logged with its id and reason, leaves the queue
and ``unacked`` for the dead-letter list ``celeriac.dead.<queue>``, gets a FAILURE stored when
it carried a task id (so ``get()`` returns instead of hanging), and the worker goes on to run
the next task. On the client side, bad arguments and an unreachable broker raise at once.
"""

from __future__ import annotations

import base64
import pickle
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import redis

from celeriac import Celery, states
from celeriac.errors import BrokerError, InvalidMessage, SerializationError
from tests.support.redis_server import free_port
from tests.support.workers import WorkerProcess

QUEUE = "celery"
QUEUE_KEYS = [QUEUE, f"{QUEUE}\x06\x163", f"{QUEUE}\x06\x166", f"{QUEUE}\x06\x169"]
DEAD_KEY = f"celeriac.dead.{QUEUE}"
WAIT_S = 15.0


# crafting messages by hand, from the spec rather than from celeriac's own builder
def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def envelope(task_id: str, tag: str, task: str = "core.add", body: Any = None) -> dict[str, Any]:
    """A Celery 5 task message as in spec §2, for ``add(2, 3)`` unless told otherwise."""
    if body is None:
        body = [[2, 3], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    return {
        "body": b64(orjson.dumps(body)),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"lang": "py", "task": task, "id": task_id, "retries": 0, "root_id": task_id},
        "properties": {
            "correlation_id": task_id,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": QUEUE},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": tag,
        },
    }


def changed(**edits: Callable[[dict[str, Any]], None]) -> Callable[[str, str], bytes]:
    def build(task_id: str, tag: str) -> bytes:
        message = envelope(task_id, tag)
        for edit in edits.values():
            edit(message)
        return orjson.dumps(message)

    return build


def with_body(data: bytes) -> Callable[[str, str], bytes]:
    return changed(body=lambda m: m.update(body=b64(data)))


@dataclass(frozen=True)
class BadCase:
    build: Callable[[str, str], bytes]  # (task id, delivery tag) -> the raw queue item
    reason: str  # regex for the reason the worker logs and dead-letters it with
    has_task_id: bool  # whether the message names a task id a caller could wait on
    has_tag: bool = True


BAD_CASES: dict[str, BadCase] = {
    "body not json": BadCase(with_body(b"this is not json"), r"not valid JSON", True),
    "body not base64": BadCase(
        changed(body=lambda m: m.update(body="!!not base64!!")), r"not valid base64", True
    ),
    "body is an object": BadCase(with_body(b'{"args": [2, 3]}'), r"3-element list", True),
    "body has two elements": BadCase(with_body(b"[[2, 3], {}]"), r"3-element list", True),
    "args not a list": BadCase(with_body(b"[5, {}, {}]"), r"args is int", True),
    "envelope not json": BadCase(
        lambda task_id, tag: b"this is not json",
        r"envelope is not (valid JSON|a JSON object)",
        False,
        has_tag=False,
    ),
    "headers without task": BadCase(
        changed(task=lambda m: m["headers"].pop("task")), r"no 'task'", True
    ),
    "headers without id": BadCase(changed(id=lambda m: m["headers"].pop("id")), r"no 'id'", False),
    "headers not an object": BadCase(
        changed(headers=lambda m: m.update(headers="task=core.add")), r"no 'headers'", False
    ),
    "unknown content type": BadCase(
        changed(ct=lambda m: m.update({"content-type": "application/x-yaml"})),
        r"unknown content type 'application/x-yaml'",
        True,
    ),
    "pickle content type": BadCase(
        changed(
            ct=lambda m: m.update(
                {
                    "content-type": "application/x-python-serialize",
                    "body": b64(pickle.dumps([[2, 3], {}, None])),
                }
            )
        ),
        r"refusing to deserialize content of type 'pickle'",
        True,
    ),
    "unknown task name": BadCase(
        changed(task=lambda m: m["headers"].update(task="core.nope")),
        r"unregistered task '?core\.nope",
        True,
    ),
}
WITH_TASK_ID = sorted(name for name, case in BAD_CASES.items() if case.has_task_id)


# fixtures and waiting
@pytest.fixture
def broker(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def results(backend_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(backend_url)
    yield client
    client.close()


@pytest.fixture
def client(redis_url: str, backend_url: str) -> Iterator[Celery]:
    app = Celery("bad_input_client", broker=redis_url, backend=backend_url)
    yield app
    app.close()


@pytest.fixture
def worker(worker_factory: Callable[..., WorkerProcess]) -> WorkerProcess:
    return worker_factory("core_tasks", "-P", "solo")


def wait_until(condition: Callable[[], Any], what: str, timeout_s: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.02)


@dataclass(frozen=True)
class Pushed:
    task_id: str
    tag: str
    raw: bytes


def push(broker: redis.Redis, case: BadCase) -> Pushed:
    task_id, tag = f"bad-{uuid.uuid4()}", str(uuid.uuid4())
    raw = case.build(task_id, tag)
    broker.lpush(QUEUE, raw)
    return Pushed(task_id, tag, raw)


def dead_record(broker: redis.Redis, raw: bytes) -> dict[str, Any] | None:
    for item in broker.lrange(DEAD_KEY, 0, -1):
        record = orjson.loads(item)
        if record.get("message") == raw.decode():
            return record  # type: ignore[no-any-return]
    return None


def log_line_with(worker: WorkerProcess, pattern: str) -> str:
    def find() -> str | None:
        return next((line for line in worker.log().splitlines() if re.search(pattern, line)), None)

    try:
        return str(wait_until(find, f"a log line matching {pattern!r}"))
    except AssertionError:
        raise AssertionError(f"no log line matches {pattern!r}:\n{worker.log()}") from None


# the worker side, for every kind of bad message
@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_message_moves_from_queue_and_unacked_to_the_dead_letter_list(
    name: str, worker: WorkerProcess, broker: redis.Redis
) -> None:
    pushed = push(broker, BAD_CASES[name])
    record = wait_until(lambda: dead_record(broker, pushed.raw), "the dead-letter record")
    assert (record["queue"], bool(re.search(BAD_CASES[name].reason, record["reason"]))) == (
        QUEUE,
        True,
    )
    assert sum(broker.llen(key) for key in QUEUE_KEYS) == 0
    assert (broker.hlen("unacked"), broker.zcard("unacked_index")) == (0, 0)


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_message_is_logged_with_its_id_and_reason(
    name: str, worker: WorkerProcess, broker: redis.Redis
) -> None:
    case = BAD_CASES[name]
    pushed = push(broker, case)
    line = log_line_with(worker, case.reason)
    if case.has_task_id:
        assert pushed.task_id in line
    elif case.has_tag:
        assert pushed.tag in line


@pytest.mark.parametrize("name", WITH_TASK_ID)
def test_bad_message_with_a_task_id_stores_failure_so_get_returns(
    name: str, worker: WorkerProcess, broker: redis.Redis, client: Celery
) -> None:
    pushed = push(broker, BAD_CASES[name])
    result = client.AsyncResult(pushed.task_id)
    error = result.get(timeout=WAIT_S, propagate=False)
    assert result.state == states.FAILURE
    assert isinstance(error, Exception)


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_worker_runs_the_next_task_after_a_bad_message(
    name: str, worker: WorkerProcess, broker: redis.Redis, client: Celery
) -> None:
    pushed = push(broker, BAD_CASES[name])
    assert client.send_task("core.add", (2, 3)).get(timeout=WAIT_S) == 5
    assert dead_record(broker, pushed.raw) is not None  # the bad one went first


def test_invalid_message_failure_get_raises_invalid_message_with_the_reason(
    worker: WorkerProcess, broker: redis.Redis, client: Celery
) -> None:
    pushed = push(broker, BAD_CASES["body has two elements"])
    with pytest.raises(InvalidMessage, match="3-element list"):
        client.AsyncResult(pushed.task_id).get(timeout=WAIT_S)


# unknown task names: Celery's NotRegistered semantics
def test_unknown_task_stores_celerys_not_registered_failure(
    worker: WorkerProcess, broker: redis.Redis, results: redis.Redis
) -> None:
    pushed = push(broker, BAD_CASES["unknown task name"])
    key = f"celery-task-meta-{pushed.task_id}"
    meta = orjson.loads(wait_until(lambda: results.get(key), "the stored FAILURE"))
    assert (meta["status"], meta["traceback"], meta["task_id"]) == (
        "FAILURE",
        None,
        pushed.task_id,
    )
    assert meta["result"] == {
        "exc_type": "NotRegistered",
        "exc_message": ["core.nope"],
        "exc_module": "celery.exceptions",
    }


def test_unknown_task_get_raises_not_registered_naming_the_task(
    worker: WorkerProcess, broker: redis.Redis, client: Celery
) -> None:
    pushed = push(broker, BAD_CASES["unknown task name"])
    with pytest.raises(KeyError) as caught:  # NotRegistered is a KeyError, in Celery too
        client.AsyncResult(pushed.task_id).get(timeout=WAIT_S)
    assert type(caught.value).__name__ == "NotRegistered"
    assert caught.value.args == ("core.nope",)


# arguments that do not fit the function: the task runs and fails, as in Celery
def test_arguments_that_do_not_fit_fail_the_task_with_type_error(
    worker: WorkerProcess, broker: redis.Redis, client: Celery
) -> None:
    task_id = f"bad-{uuid.uuid4()}"
    broker.lpush(QUEUE, orjson.dumps(envelope(task_id, str(uuid.uuid4()), body=[[1], {}, None])))
    with pytest.raises(TypeError, match="y"):
        client.AsyncResult(task_id).get(timeout=WAIT_S)


def test_arguments_that_do_not_fit_are_acked_not_dead_lettered(
    worker: WorkerProcess, broker: redis.Redis, client: Celery
) -> None:
    task_id = f"bad-{uuid.uuid4()}"
    broker.lpush(QUEUE, orjson.dumps(envelope(task_id, str(uuid.uuid4()), body=[[1], {}, None])))
    client.AsyncResult(task_id).get(timeout=WAIT_S, propagate=False)
    wait_until(lambda: broker.hlen("unacked") == 0, "the ack")
    assert broker.llen(DEAD_KEY) == 0


# unusual messages a Celery worker still runs (spec §11): they must run here too
def _headers_only_task_and_id(message: dict[str, Any]) -> None:
    message["headers"] = {"task": message["headers"]["task"], "id": message["headers"]["id"]}


def _raw_json_body(message: dict[str, Any]) -> None:
    message["body"] = "[[2, 3], {}, {}]"
    del message["properties"]["body_encoding"]


UNUSUAL_BUT_VALID: dict[str, Callable[[dict[str, Any]], None]] = {
    "headers only task and id": _headers_only_task_and_id,
    "empty embed": lambda m: m.update(body=b64(b"[[2, 3], {}, {}]")),
    "null embed": lambda m: m.update(body=b64(b"[[2, 3], {}, null]")),
    "body without body_encoding": _raw_json_body,
    "naive eta in the past": lambda m: m["headers"].update(eta="2001-02-03T04:05:06"),
    "no delivery_info": lambda m: m["properties"].pop("delivery_info"),
}


@pytest.mark.parametrize("name", sorted(UNUSUAL_BUT_VALID))
def test_unusual_message_that_celery_runs_also_runs_here(
    name: str, worker: WorkerProcess, broker: redis.Redis, client: Celery
) -> None:
    task_id = f"odd-{uuid.uuid4()}"
    message = envelope(task_id, str(uuid.uuid4()))
    UNUSUAL_BUT_VALID[name](message)
    broker.lpush(QUEUE, orjson.dumps(message))
    assert client.AsyncResult(task_id).get(timeout=WAIT_S) == 5


def test_message_expired_before_it_runs_is_stored_as_revoked_expired(
    worker: WorkerProcess, broker: redis.Redis, results: redis.Redis
) -> None:
    task_id = f"late-{uuid.uuid4()}"
    message = envelope(task_id, str(uuid.uuid4()))
    message["headers"]["expires"] = "2001-02-03T04:05:06+00:00"
    broker.lpush(QUEUE, orjson.dumps(message))
    meta = orjson.loads(wait_until(lambda: results.get(f"celery-task-meta-{task_id}"), "REVOKED"))
    assert (meta["status"], meta["result"]) == (
        "REVOKED",
        {
            "exc_type": "TaskRevokedError",
            "exc_message": ["expired"],
            "exc_module": "celery.exceptions",
        },
    )


def test_message_expired_before_it_runs_is_acked(
    worker: WorkerProcess, broker: redis.Redis, client: Celery
) -> None:
    task_id = f"late-{uuid.uuid4()}"
    message = envelope(task_id, str(uuid.uuid4()))
    message["headers"]["expires"] = "2001-02-03T04:05:06+00:00"
    broker.lpush(QUEUE, orjson.dumps(message))
    client.AsyncResult(task_id).get(timeout=WAIT_S, propagate=False)
    wait_until(lambda: broker.hlen("unacked") == 0, "the ack")
    assert (sum(broker.llen(key) for key in QUEUE_KEYS), broker.llen(DEAD_KEY)) == (0, 0)


# the client side
class Opaque:
    """A value JSON cannot hold."""


def test_delay_with_an_unserializable_argument_raises_naming_its_type(client: Celery) -> None:
    with pytest.raises(SerializationError, match=r"type Opaque"):
        client.send_task("core.echo", ({"nested": [Opaque()]},))


def test_delay_with_an_unserializable_argument_queues_nothing(
    client: Celery, broker: redis.Redis
) -> None:
    with pytest.raises(SerializationError):
        client.send_task("core.echo", (Opaque(),))
    assert sum(broker.llen(key) for key in QUEUE_KEYS) == 0


@pytest.fixture
def unreachable_client() -> Iterator[Celery]:
    """A client whose broker is a loopback port nothing listens on, with a password."""
    port = free_port()
    app = Celery("unreachable", broker=f"redis://:s3cr3t-pw@127.0.0.1:{port}/0")
    yield app
    app.close()


def _send_error(app: Celery) -> BrokerError:
    with pytest.raises(BrokerError) as caught:
        app.send_task("core.add", (2, 3))
    return caught.value


def test_unreachable_broker_raises_broker_error_after_a_bounded_retry(
    unreachable_client: Celery,
) -> None:
    started = time.monotonic()
    error = _send_error(unreachable_client)
    assert time.monotonic() - started < 10.0
    assert "attempts" in str(error)


def test_unreachable_broker_error_shows_the_url_with_the_password_hidden(
    unreachable_client: Celery,
) -> None:
    message = str(_send_error(unreachable_client))
    port = unreachable_client.broker_url.rsplit(":", 1)[1].split("/")[0]
    assert f"redis://:***@127.0.0.1:{port}/0" in message
    assert "s3cr3t-pw" not in message


def test_unreachable_broker_error_says_what_to_check(unreachable_client: Celery) -> None:
    message = str(_send_error(unreachable_client))
    assert "redis-server is running" in message
    assert "broker_url" in message
