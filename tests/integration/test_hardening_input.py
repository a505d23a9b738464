"""Hand-written producers: envelopes that leave out what Celery's own consumer can do without
(the delivery tag, properties, delivery_info, body_encoding, content-encoding, content-type,
priority, optional headers) are given a tag, run, acked and recovered like any other; a
content type that is not accepted is refused with one log line and a stored failure.

Messages are LPUSHed straight into a real redis-server, or published raw on a real SQLite
file, and run by a real worker process.
"""

from __future__ import annotations

import base64
import logging
import pickle
import signal
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
import redis

from celeriac import Celery, pidbox, states
from celeriac.brokers.redis import RedisBroker
from celeriac.errors import ContentDisallowed, InvalidMessage
from celeriac.events import wire
from celeriac.events.receiver import EventReceiver
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


def _due_soon(task_id: str) -> dict[str, Any]:
    """No tag and an ETA: parked broker-side, then run, keeping the tag it was given."""
    envelope = minimal(task_id, 4, 4)
    due = datetime.now(timezone.utc) + timedelta(seconds=0.5)
    envelope["headers"]["eta"] = due.isoformat()
    return envelope


SHAPES: dict[str, tuple[Callable[[str], dict[str, Any]], int]] = {
    "only headers and body": (lambda task_id: minimal(task_id, 20, 22), 42),
    "properties without a delivery tag": (_no_tag, 2),
    "base64 body, no priority, no delivery_info": (_base64_no_priority, 4),
    "no lang/origin/argsrepr/root_id headers": (_full_headers_minus_optional, 6),
    "no tag, due in half a second": (_due_soon, 8),
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


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll *condition* until it holds (acks may ride on the worker's next fetch)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


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
    wait_until(lambda: r.hlen(UNACKED) == 0, "the worker to ack every message")
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
    wait_until(lambda: r.hlen(UNACKED) == 0, "the recovered message to be acked")


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


def test_a_delivery_tag_of_the_wrong_type_fails_the_task_saying_to_leave_it_out(
    worker_factory: Callable[..., WorkerProcess], client: Celery, r: redis.Redis
) -> None:
    worker_factory("core_tasks", "-P", "solo")
    task_id = f"hand-{uuid.uuid4()}"
    envelope = minimal(task_id, 1, 2)
    envelope["properties"] = {"delivery_tag": 5}
    r.lpush("celery", orjson.dumps(envelope))
    with pytest.raises(InvalidMessage, match="leave it out and the broker gives the message a tag"):
        client.AsyncResult(task_id).get(timeout=WAIT_S)
    assert r.llen("celeriac.dead.celery") == 1


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


class _LeavesAMarker:
    """Unpickling this creates a file: proof that a pickle was (or was not) loaded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def test_a_pickled_result_is_refused_and_never_unpickled(
    client: Celery, tmp_path: Path, backend_url: str
) -> None:
    marker = tmp_path / "unpickled"
    task_id = f"pickled-result-{uuid.uuid4()}"
    meta = {"status": "SUCCESS", "result": _LeavesAMarker(str(marker)), "task_id": task_id}
    results = redis.Redis.from_url(backend_url)
    try:
        results.set(f"celery-task-meta-{task_id}", pickle.dumps(meta))
    finally:
        results.close()
    result = client.AsyncResult(task_id)
    with pytest.raises(ContentDisallowed, match="never unpickles"):
        result.get(timeout=WAIT_S)
    with pytest.raises(ContentDisallowed):
        _ = result.state
    assert not marker.exists()
    # the client still reads JSON results afterwards
    client.backend.store(task_id, {"status": "SUCCESS", "result": 7, "task_id": task_id}, None)
    assert client.AsyncResult(task_id).get(timeout=WAIT_S) == 7


def _pickled_envelope(body: Any, content_type: str = "application/x-python-serialize") -> bytes:
    return orjson.dumps(
        {
            "body": base64.b64encode(pickle.dumps(body)).decode(),
            "content-encoding": "binary",
            "content-type": content_type,
            "headers": {"clock": 1},
            "properties": {"body_encoding": "base64", "delivery_tag": str(uuid.uuid4())},
        }
    )


def test_a_pickled_control_message_is_refused_with_one_log_line(
    worker_factory: Callable[..., WorkerProcess], client: Celery, r: redis.Redis, tmp_path: Path
) -> None:
    worker = worker_factory("core_tasks", "-P", "solo")
    marker = tmp_path / "unpickled"
    request = {"method": "shutdown", "arguments": {"x": _LeavesAMarker(str(marker))}}
    r.publish(pidbox.channel(0), _pickled_envelope(request))
    # remote control still answers (a ping sent after the pickled request is handled after it)
    replies = client.control.inspect(timeout=5, limit=1).ping() or {}
    assert list(replies.values()) == [{"ok": "pong"}]
    assert worker.process.poll() is None  # the pickled "shutdown" was not obeyed
    assert not marker.exists()
    refused = [line for line in worker.log().splitlines() if "x-python-serialize" in line]
    assert len(refused) == 1, refused
    assert "remote control reads JSON only" in refused[0]


def test_pickled_events_are_not_read_and_json_events_still_are(
    client: Celery, r: redis.Redis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # no worker needed: the event consumer (EventReceiver) reads the celeryev fanout itself
    marker = tmp_path / "unpickled"
    receiver = EventReceiver(client)
    events = cast("Generator[dict[str, Any] | None, None, None]", receiver.events(WAIT_S))
    next(events)  # subscribed from here on
    pickled = [{"type": "worker-heartbeat", "x": _LeavesAMarker(str(marker))}]
    r.publish(wire.channel(0, "worker.heartbeat"), _pickled_envelope(pickled))
    sent = {"type": "worker-heartbeat", "hostname": "hand@test", "clock": 1, "timestamp": 1.0}
    r.publish(
        wire.channel(0, "worker.heartbeat"), wire.encode(sent, "hand@test", "worker.heartbeat")
    )
    with caplog.at_level(logging.WARNING, logger="celeriac.events.receiver"):
        got = next(event for event in events if event is not None)
    events.close()  # stop listening
    assert got["hostname"] == "hand@test"
    assert not marker.exists()
    refused = [
        rec.getMessage() for rec in caplog.records if "x-python-serialize" in rec.getMessage()
    ]
    assert len(refused) == 1, refused


def test_a_tagless_message_held_by_a_killed_worker_runs_on_the_next_one(
    worker_factory: Callable[..., WorkerProcess], client: Celery, r: redis.Redis
) -> None:
    # acks_late: the message stays in `unacked` while its task runs
    first = worker_factory("acks_late_core_tasks", "-P", "solo")
    task_id = f"hand-{uuid.uuid4()}"
    envelope = minimal(task_id, 0, 0)
    envelope["headers"]["task"] = "core.sleep"
    envelope["body"] = orjson.dumps([[2.0], {}, {}]).decode()
    r.lpush("celery", orjson.dumps(envelope))

    def held_tag() -> str | None:
        for tag, entry in r.hgetall(UNACKED).items():
            if task_id.encode() in entry:
                return tag.decode() if isinstance(tag, bytes) else str(tag)
        return None

    wait_until(lambda: held_tag() is not None, "the worker to take the tagless message")
    tag = held_tag()
    assert tag is not None and tag.startswith("celeriac-")
    first.signal(signal.SIGKILL)  # well inside the task's 2 s
    first.wait()
    assert client.AsyncResult(task_id).state == states.PENDING
    second = worker_factory("acks_late_core_tasks", "-P", "solo")
    assert client.AsyncResult(task_id).get(timeout=WAIT_S) == 2.0
    assert "restored 1 message(s)" in second.log()
    wait_until(lambda: held_tag() is None, "the recovered message to be acked")


def test_hand_written_envelopes_on_the_memory_broker_run_too() -> None:
    from celeriac.contrib.testing.worker import start_worker

    app = Celery("hand_memory", broker=f"memory://hand-{uuid.uuid4()}", backend="memory://")

    @app.task(name="core.add")
    def add(x: int, y: int) -> int:
        return x + y

    sent = push_shapes(lambda raw: app.broker.publish("celery", raw))
    with start_worker(app, pool="solo", perform_ping_check=False):
        assert_all_succeeded(app, sent)
    assert app.broker.dead_letter_count("celery") == 0
