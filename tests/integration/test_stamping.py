"""Stamping on a real worker over Redis: stamps given with ``sig.stamp`` (headers and a
StampingVisitor) reach ``self.request.stamps`` of every task of a chain, group and chord
and of linked callbacks as the worker sends them; a visitor that raises fails the stamp
call and nothing is sent; ``app.control.revoke_by_stamped_headers`` revokes queued tasks
with a matching stamp and leaves the others."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from celeriac import Celery, chain, chord, group
from celeriac.canvas import Signature, StampingVisitor
from celeriac.errors import TaskRevokedError
from tests.support.redis_server import RedisServer
from tests.support.stamp_tasks import StampTasks, define_tasks
from tests.support.workers import WorkerProcess, start_celeriac_worker

WAIT_S = 30.0


@dataclass
class Stack:
    client: Celery
    t: StampTasks
    worker: WorkerProcess
    results: redis.Redis
    broker: redis.Redis


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer) -> Iterator[Stack]:
    redis_server.client(8).flushdb()
    redis_server.client(9).flushdb()
    broker_url, backend_url = redis_server.url(8), redis_server.url(9)
    # one slot: a held task keeps the ones sent after it in the queue
    worker = start_celeriac_worker(
        "stamp_tasks", broker_url, "-P", "threads", "-c", "1", backend_url=backend_url
    )
    client = Celery("stamp_client", broker=broker_url, backend=backend_url)
    try:
        yield Stack(
            client, define_tasks(client), worker, redis_server.client(9), redis_server.client(8)
        )
    finally:
        worker.stop()
        client.close()


class Labels(StampingVisitor):
    """Stamps each task, and tells chain, group and chord body parts apart."""

    def on_signature(self, sig: Signature, **headers: Any) -> dict[str, Any]:
        return {"on_signature": True}

    def on_group_start(self, group: Any, **headers: Any) -> dict[str, Any]:
        return {"in_group": "yes"}

    def on_chain_start(self, chain: Any, **headers: Any) -> dict[str, Any]:
        return {"in_chain": "yes"}

    def on_chord_body(self, sig: Any, **headers: Any) -> dict[str, Any]:
        return {"chord_body": "yes"}

    def on_callback(self, callback: Signature, **header: Any) -> dict[str, Any]:
        return {"callback": "yes"}


def stamps(**values: Any) -> dict[str, Any]:
    return {"stamped_headers": sorted(values), "stamps": values}


def test_a_stamped_task_reads_its_stamps(stack: Stack) -> None:
    sig = stack.t.report.s()
    sig.stamp(visitor=Labels(), mystamp="m1")
    assert sig.options["stamped_headers"]  # kept in the options, as Celery keeps them
    assert sig.delay().get(timeout=WAIT_S) == stamps(mystamp="m1", on_signature=True)
    assert stack.t.report.delay().get(timeout=WAIT_S) == stamps()


def test_stamps_reach_every_step_of_a_chain(stack: Stack) -> None:
    t = stack.t
    workflow = chain(t.report.s(), t.report.s(), t.report.s())
    workflow.stamp(visitor=Labels(), run="r1")
    result = workflow.delay()
    expected = stamps(run="r1", in_chain="yes", on_signature=True)
    assert result.get(timeout=WAIT_S) == expected
    assert result.parent is not None and result.parent.get(timeout=WAIT_S) == expected


def test_stamps_reach_every_member_of_a_group(stack: Stack) -> None:
    t = stack.t
    workflow = group(t.report.s(), t.report.s())
    workflow.stamp(visitor=Labels(), run="r2")
    expected = stamps(run="r2", in_group="yes", on_signature=True)
    assert workflow.delay().get(timeout=WAIT_S) == [expected, expected]


def test_a_chord_stamps_its_header_and_with_a_visitor_its_body(stack: Stack) -> None:
    t = stack.t
    workflow = chord([t.report.s(), t.report.s()], t.report.s())
    workflow.stamp(visitor=Labels(), run="r3")
    body = workflow.delay().get(timeout=WAIT_S)
    assert body == stamps(run="r3", in_group="yes", chord_body="yes", on_signature=True)
    plain = chord([t.report.s(), t.report.s()], t.report.s())
    plain.stamp(run="r4")  # Celery's rule: without a visitor the body is not stamped
    assert plain.delay().get(timeout=WAIT_S) == stamps()
    assert plain.tasks[0].options["run"] == "r4"


def test_callbacks_are_stamped_through_on_callback(stack: Stack) -> None:
    t = stack.t
    callback_id = str(uuid.uuid4())
    sig = t.report.s().set(link=[t.report.s().set(task_id=callback_id)])
    sig.stamp(visitor=Labels(), run="r5")
    sig.delay().get(timeout=WAIT_S)
    callback = stack.client.AsyncResult(callback_id).get(timeout=WAIT_S)
    assert callback == stamps(run="r5", callback="yes", on_signature=True)


def test_appended_stamps_keep_both_values(stack: Stack) -> None:
    sig = stack.t.report.s()
    sig.stamp(run="first")
    sig.stamp(append_stamps=True, run="second")
    # as Celery orders them: the new value, then the one the signature had
    assert sig.delay().get(timeout=WAIT_S) == stamps(run=["second", "first"])


def test_a_visitor_that_raises_fails_the_call_and_sends_nothing(stack: Stack) -> None:
    class Broken(StampingVisitor):
        def on_signature(self, sig: Signature, **headers: Any) -> dict[str, Any]:
            raise RuntimeError("no stamp for you")

    workflow = chain(stack.t.report.s(), stack.t.report.s())
    before = stack.broker.llen("celery")
    with pytest.raises(RuntimeError, match="no stamp for you"):
        workflow.stamp(visitor=Broken())
    assert stack.broker.llen("celery") == before


def test_revoke_by_stamped_headers_drops_queued_matching_tasks(stack: Stack) -> None:
    t = stack.t
    key = f"hold-{uuid.uuid4()}"
    held = t.hold.delay(key)
    doomed = [t.report.s(), t.report.s()]
    for sig, value in zip(doomed, ["b1", "b2"], strict=True):
        sig.stamp(batch=value)
    revoked = [sig.delay() for sig in doomed]
    spared_sig = t.report.s()
    spared_sig.stamp(batch="b3")
    spared = spared_sig.delay()
    replies = stack.client.control.revoke_by_stamped_headers(
        {"batch": ["b1", "b2"]}, reply=True, timeout=WAIT_S, limit=1
    )
    assert replies is not None and len(replies) == 1
    answer = next(iter(replies[0].values()))
    assert answer == {
        "ok": "headers {'batch': ['b1', 'b2']} flagged as revoked, but not terminated"
    }
    stack.results.rpush(key, "go")
    assert held.get(timeout=WAIT_S) == "released"
    assert spared.get(timeout=WAIT_S) == stamps(batch="b3")
    for result in revoked:
        with pytest.raises(TaskRevokedError):
            result.get(timeout=WAIT_S)
        assert result.state == "REVOKED"


def test_revoke_by_stamped_headers_takes_celerys_list_form(stack: Stack) -> None:
    t = stack.t
    key = f"hold-{uuid.uuid4()}"
    held = t.hold.delay(key)
    sig = t.report.s()
    sig.stamp(batch="b9")
    doomed = sig.delay()
    replies = stack.client.control.revoke_by_stamped_headers(
        ["batch=b9"], reply=True, timeout=WAIT_S, limit=1
    )
    assert replies is not None and len(replies) == 1
    stack.results.rpush(key, "go")
    assert held.get(timeout=WAIT_S) == "released"
    with pytest.raises(TaskRevokedError):
        doomed.get(timeout=WAIT_S)
    with pytest.raises(ValueError, match="dict of stamp names"):
        stack.client.control.revoke_by_stamped_headers({})


def test_revoke_by_stamped_headers_with_terminate_stops_a_running_prefork_task(
    redis_server: RedisServer,
) -> None:
    redis_server.client(10).flushdb()
    redis_server.client(11).flushdb()
    broker_url, backend_url = redis_server.url(10), redis_server.url(11)
    worker = start_celeriac_worker(
        "stamp_tasks", broker_url, "-P", "prefork", "-c", "1", backend_url=backend_url
    )
    client = Celery("stamp_terminate_client", broker=broker_url, backend=backend_url)
    results = redis_server.client(11)
    try:
        t = define_tasks(client)
        key = f"hold-{uuid.uuid4()}"
        sig = t.hold.s(key)
        sig.stamp(batch="t1")
        running = sig.delay()
        assert results.blpop([f"{key}:started"], timeout=int(WAIT_S)) is not None
        replies = client.control.revoke_by_stamped_headers(
            {"batch": "t1"}, terminate=True, reply=True, timeout=WAIT_S, limit=1
        )
        assert replies is not None and len(replies) == 1
        answer = next(iter(replies[0].values()))
        assert answer == {"ok": "headers defaultdict(<class 'set'>, {'batch': {'t1'}}) revoked"}
        with pytest.raises(TaskRevokedError, match="terminated"):
            running.get(timeout=WAIT_S)
        # the worker goes on with a new child
        assert t.add.delay(2, 3).get(timeout=WAIT_S) == 5
    finally:
        worker.stop()
        client.close()
