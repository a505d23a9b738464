"""Hand-written producers: envelopes that leave out what Celery's own consumer can do without
(the delivery tag, properties, delivery_info, body_encoding, content-encoding, content-type,
priority, optional headers) are given a tag, run, acked and recovered like any other; a
content type that is not accepted is refused with one log line and a stored failure.

Messages are LPUSHed straight into a real redis-server, or published raw on a real SQLite
file, and run by a real worker process.
"""

from __future__ import annotations

import base64
import pickle
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from celeriac import Celery, states
from celeriac.brokers.redis import RedisBroker
from celeriac.errors import InvalidMessage
from tests.support.workers import WorkerProcess, start_celeriac_worker

WAIT_S = 15.0
UNACKED = "unacked"


def minimal(task_id: str, x: int, y: int) -> dict[str, Any]:
    """The least a task message needs: the task name and id, and a JSON body as plain text."""
    return {
        "body": orjson.dumps([[x, y], {}, {}]).decode(),
        "headers": {"task": "core.add", "id": task_id},
    }


def _no_tag(task_id: str) -> dict[str, Any]:
    envelope = minimal(task_id, 1, 1)
    envelope["properties"] = {"delivery_info": {"exchange": "", "routing_key": "celery"}}
    envelope["content-type"] = "application/json"
    return envelope


def _base64_no_priority(task_id: str) -> dict[str, Any]:
    envelope = minimal(task_id, 2, 2)
    envelope["body"] = base64.b64encode(envelope["body"].encode()).decode()
    envelope["properties"] = {"body_encoding": "base64"}
    return envelope


def _full_headers_minus_optional(task_id: str) -> dict[str, Any]:
    envelope = minimal(task_id, 3, 3)
    envelope["headers"].update(
        {"retries": 0, "eta": None, "expires": None, "timelimit": [None, None]}
    )
    envelope["content-type"] = "application/json"
    envelope["content-encoding"] = "utf-8"
    envelope["properties"] = {"delivery_mode": 2, "priority": None}
    return envelope


SHAPES: dict[str, tuple[Callable[[str], dict[str, Any]], int]] = {
    "only headers and body": (lambda task_id: minimal(task_id, 20, 22), 42),
    "properties without a delivery tag": (_no_tag, 2),
    "base64 body, no priority, no delivery_info": (_base64_no_priority, 4),
    "no lang/origin/argsrepr/root_id headers": (_full_headers_minus_optional, 6),
}


def push_shapes(push: Callable[[bytes], object]) -> dict[str, tuple[str, int]]:
    sent: dict[str, tuple[str, int]] = {}
    for name, (make, expected) in SHAPES.items():
        task_id = f"hand-{uuid.uuid4()}"
        push(orjson.dumps(make(task_id)))
        sent[name] = (task_id, expected)
    return sent


def assert_all_succeeded(client: Celery, sent: dict[str, tuple[str, int]]) -> None:
    for name, (task_id, expected) in sent.items():
        result = client.AsyncResult(task_id)
        assert result.get(timeout=WAIT_S) == expected, name
        assert result.state == states.SUCCESS, name


@pytest.fixture
def client(redis_url: str, backend_url: str) -> Iterator[Celery]:
    app = Celery("hand_client", broker=redis_url, backend=backend_url)
    yield app
    app.close()


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_url)
    yield conn
    conn.close()


def test_hand_written_envelopes_pushed_with_lpush_run_and_store_success(
    worker_factory: Callable[..., WorkerProcess], client: Celery, r: redis.Redis
) -> None:
    worker_factory("core_tasks", "-P", "solo")
    sent = push_shapes(lambda raw: r.lpush("celery", raw))
    assert_all_succeeded(client, sent)
    # acked: nothing left held, nothing dead-lettered
    assert r.hlen(UNACKED) == 0
    assert r.llen("celeriac.dead.celery") == 0


def test_a_tagless_message_gets_a_tag_written_into_it_and_is_recovered_under_it(
    redis_url: str, client: Celery, r: redis.Redis, worker_factory: Callable[..., WorkerProcess]
) -> None:
    task_id = f"hand-{uuid.uuid4()}"
    r.lpush("celery", orjson.dumps(minimal(task_id, 5, 6)))
    holder = RedisBroker(redis_url, client.conf)
    survivor = RedisBroker(redis_url, client.conf)
    try:
        (delivery,) = holder.fetch(["celery"], 1, 0.0)
        assert delivery.receipt
        held = orjson.loads(r.hget(UNACKED, delivery.receipt) or b"null")
        assert held[0]["properties"]["delivery_tag"] == delivery.receipt
        # the holder dies: another consumer puts the message back, tag and all
        assert survivor.recover_owner(holder.owner, 5) == (1, 0)
        (back,) = [orjson.loads(raw) for raw in r.lrange("celery", 0, -1)]
        assert back["properties"]["delivery_tag"] == delivery.receipt
        assert back["headers"]["redelivered"] is True
        assert int(r.hget("celeriac.losses", delivery.receipt) or 0) >= 1
    finally:
        holder.close()
        survivor.close()
    worker_factory("core_tasks", "-P", "solo")
    assert client.AsyncResult(task_id).get(timeout=WAIT_S) == 11
    assert r.hlen(UNACKED) == 0


def test_properties_of_the_wrong_type_are_still_dead_lettered(
    worker_factory: Callable[..., WorkerProcess], client: Celery, r: redis.Redis
) -> None:
    worker = worker_factory("core_tasks", "-P", "solo")
    envelope = minimal(f"hand-{uuid.uuid4()}", 1, 2)
    envelope["properties"] = "celery"
    r.lpush("celery", orjson.dumps(envelope))
    after = client.send_task("core.add", (1, 1))
    assert after.get(timeout=WAIT_S) == 2
    assert r.llen("celeriac.dead.celery") == 1
    assert "envelope 'properties' is not an object" in worker.log()


def test_pickle_task_message_is_refused_with_one_log_line_and_a_stored_failure(
    worker_factory: Callable[..., WorkerProcess], client: Celery, r: redis.Redis
) -> None:
    worker = worker_factory("core_tasks", "-P", "solo")
    task_id = f"pickled-{uuid.uuid4()}"
    envelope = minimal(task_id, 1, 2)
    envelope["content-type"] = "application/x-python-serialize"
    envelope["body"] = base64.b64encode(pickle.dumps(((1, 2), {}, {}))).decode()
    envelope["properties"] = {"body_encoding": "base64"}
    r.lpush("celery", orjson.dumps(envelope))
    result = client.AsyncResult(task_id)
    with pytest.raises(InvalidMessage) as caught:
        result.get(timeout=WAIT_S)
    assert result.state == states.FAILURE
    assert "refusing to deserialize content of type 'pickle'" in str(caught.value)
    lines = [line for line in worker.log().splitlines() if task_id in line]
    assert len(lines) == 1, lines
    assert "accept_content" in lines[0]


# SQLite: the same envelopes, published raw on the file a worker consumes
@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/hand.sqlite3"


def test_hand_written_envelopes_on_sqlite_run_and_store_success(sqlite_url: str) -> None:
    client = Celery("hand_sqlite", broker=sqlite_url, backend=sqlite_url)
    worker = start_celeriac_worker("core_tasks", sqlite_url, "-P", "solo", backend_url=sqlite_url)
    try:
        sent = push_shapes(lambda raw: client.broker.publish("celery", raw))
        assert_all_succeeded(client, sent)
        assert client.broker.dead_letter_count("celery") == 0
    finally:
        worker.stop()
        worker.log_path.unlink(missing_ok=True)
        client.close()
