"""Celery's task protocol 1 (``task_protocol = 1``: the body holds the whole request) from a
real Celery client, run by a celeriac worker on every pool: tasks, chains, groups, chords,
failures and retries, with results stored as Celery stores them."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import celery
import orjson
import pytest
import redis
from celery import chain, chord, group

from tests.interop.peers import release_celery_results
from tests.support.redis_server import RedisServer
from tests.support.workers import start_celeriac_worker

WAIT_S = 30.0
BROKER_DB, BACKEND_DB = 12, 13
POOLS = ["solo", "threads", "prefork", "gevent", "eventlet", "asyncio"]


@pytest.fixture(scope="module", params=POOLS)
def client(request: pytest.FixtureRequest, redis_server: RedisServer) -> Iterator[celery.Celery]:
    """A protocol 1 Celery client, with a celeriac worker of one pool behind it."""
    redis_server.client(BROKER_DB).flushdb()
    redis_server.client(BACKEND_DB).flushdb()
    broker_url, backend_url = redis_server.url(BROKER_DB), redis_server.url(BACKEND_DB)
    worker = start_celeriac_worker(
        "semantics_tasks", broker_url, "-P", request.param, "-c", "2", backend_url=backend_url
    )
    app = celery.Celery("p1_client", broker=broker_url, backend=backend_url, set_as_current=False)
    app.conf.task_protocol = 1
    try:
        yield app
    finally:
        release_celery_results(app)
        app.close()
        worker.stop()


def test_the_exact_protocol_1_message_runs(
    client: celery.Celery, redis_server: RedisServer
) -> None:
    """Sent to a queue nobody reads, checked to be protocol 1, then moved onto the worker's."""
    result = client.send_task("sem.add", (20, 22), queue="p1_parked")
    broker = redis_server.client(BROKER_DB)
    raw = broker.rpop("p1_parked")
    assert isinstance(raw, bytes)
    envelope = orjson.loads(raw)
    body = orjson.loads(base64.b64decode(envelope["body"]))
    assert "task" not in envelope["headers"]
    assert (body["task"], body["id"], body["args"]) == ("sem.add", result.id, [20, 22])
    broker.lpush("celery", raw)
    assert result.get(timeout=WAIT_S) == 42


def test_task_runs_and_its_result_is_stored(client: celery.Celery) -> None:
    result = client.send_task("sem.add", (2, 3))
    assert result.get(timeout=WAIT_S) == 5
    assert result.state == "SUCCESS"


def test_keyword_arguments_countdown_and_expires(client: celery.Celery) -> None:
    sent = time.time()
    result = client.send_task("sem.add", kwargs={"x": 1, "y": 41}, countdown=1, expires=60)
    assert result.get(timeout=WAIT_S) == 42
    assert result.date_done is not None and result.date_done.timestamp() >= sent + 1


def test_request_fields_of_a_protocol_1_message(client: celery.Celery) -> None:
    result = client.send_task(
        "sem.fields", (1,), {"b": 2}, headers={"custom": "x"}, time_limit=30, soft_time_limit=20
    )
    fields = result.get(timeout=WAIT_S)
    assert (fields["id"], fields["task"]) == (result.id, "sem.fields")
    assert (fields["args"], fields["kwargs"]) == ([1], {"b": 2})
    assert fields["timelimit"] == [30, 20]
    assert fields["custom_attribute"] == "x"


def test_call_that_does_not_fit_fails_at_once(client: celery.Celery) -> None:
    started = time.monotonic()
    result = client.send_task("sem.add", (1, 2, 3))
    with pytest.raises(TypeError, match="positional argument"):
        result.get(timeout=WAIT_S)
    assert result.state == "FAILURE"
    assert time.monotonic() - started < 10  # at once: no wait for a timeout


def test_retry_of_a_protocol_1_message(client: celery.Celery) -> None:
    fields = client.send_task("sem.retry_fields", headers={"custom": "kept"}).get(timeout=WAIT_S)
    assert fields["retries"] == 1
    assert fields["custom_attribute"] == "kept"


def test_chain(client: celery.Celery) -> None:
    add = client.signature("sem.add")
    result = chain(add.clone((1, 2)), add.clone((10,)), add.clone((100,))).apply_async()
    assert result.get(timeout=WAIT_S) == 113


def test_group(client: celery.Celery) -> None:
    add = client.signature("sem.add")
    result = group(add.clone((i, i)) for i in range(4)).apply_async()
    assert result.get(timeout=WAIT_S) == [0, 2, 4, 6]


def test_chord(client: celery.Celery) -> None:
    add = client.signature("sem.add")
    body = client.signature("sem.fields")
    result = chord([add.clone((1, 1)), add.clone((2, 2))], body).apply_async()
    assert result.get(timeout=WAIT_S)["args"] == [[2, 4]]


def test_not_a_task_message_is_still_refused(
    client: celery.Celery, redis_server: RedisServer
) -> None:
    """A body that is neither protocol: dead-lettered, the worker goes on."""
    with client.connection_for_write() as conn:
        conn.default_channel.basic_publish(
            conn.default_channel.prepare_message('{"no": "task"}', headers={}),
            exchange="",
            routing_key="celery",
        )
    result = client.send_task("sem.add", (1, 1))
    assert result.get(timeout=WAIT_S) == 2
    broker = redis.Redis.from_url(redis_server.url(BROKER_DB))
    deadline = time.monotonic() + WAIT_S
    while not broker.keys("*dead*") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert broker.keys("*dead*")
