"""Stamping across implementations on one Redis: a Celery client's stamped chain, group
and chord reach ``self.request.stamps`` on a celeriac worker, ours reach a Celery
worker's, and each side's ``revoke_by_stamped_headers`` makes the other side's worker drop
the queued tasks it names."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import celery
import pytest
import redis
from celery.canvas import StampingVisitor as CeleryVisitor

import celeriac
from celeriac.canvas import StampingVisitor
from tests.interop.peers import CELERY_WORKER_FLAGS, release_celery_backend
from tests.support.stamp_tasks import StampTasks, define_tasks
from tests.support.workers import WorkerProcess

WAIT_S = 30.0
Factory = Callable[..., WorkerProcess]


@pytest.fixture
def celery_side(celery_client: celery.Celery) -> Iterator[StampTasks]:
    yield define_tasks(celery_client)
    release_celery_backend(celery_client)


@pytest.fixture
def our_side(celeriac_client: celeriac.Celery) -> StampTasks:
    return define_tasks(celeriac_client)


def stamps(**values: Any) -> dict[str, Any]:
    return {"stamped_headers": sorted(values), "stamps": values}


def visitor_of(base: type) -> Any:
    class Labels(base):  # type: ignore[misc]
        def on_signature(self, sig: Any, **headers: Any) -> dict[str, Any]:
            return {"on_signature": True}

        def on_chord_body(self, sig: Any, **headers: Any) -> dict[str, Any]:
            return {"chord_body": "yes"}

    return Labels()


def check_stamps_travel(t: StampTasks, canvas: Any, visitor: Any) -> None:
    steps = canvas.chain(t.report.s(), t.report.s())
    steps.stamp(visitor=visitor, run="chain")
    assert steps.delay().get(timeout=WAIT_S) == stamps(run="chain", on_signature=True)
    members = canvas.group(t.report.s(), t.report.s())
    members.stamp(visitor=visitor, run="group")
    assert members.delay().get(timeout=WAIT_S) == [stamps(run="group", on_signature=True)] * 2
    joined = canvas.chord([t.report.s(), t.report.s()], t.report.s())
    joined.stamp(visitor=visitor, run="chord")
    body = joined.delay().get(timeout=WAIT_S)
    assert body == stamps(run="chord", chord_body="yes", on_signature=True)


def check_revoke_by_stamps(
    t: StampTasks, client: Any, results: redis.Redis, queued_first: bool
) -> None:
    """Revoke the ``batch=b1`` stamp: a task with it is dropped as REVOKED, one with b2 runs.
    With *queued_first*, both wait in the queue behind a held task when the revoke comes
    (a Celery worker hands tasks to its pool as they arrive, so for it they come after)."""
    key = f"hold-{uuid.uuid4()}"
    held = t.hold.delay(key)
    doomed_sig, spared_sig = t.report.s(), t.report.s()
    doomed_sig.stamp(batch="b1")
    spared_sig.stamp(batch="b2")
    if queued_first:
        doomed, spared = doomed_sig.delay(), spared_sig.delay()
    replies = client.control.revoke_by_stamped_headers(
        {"batch": "b1"}, reply=True, timeout=WAIT_S, limit=1
    )
    assert replies and "flagged as revoked" in next(iter(replies[0].values()))["ok"]
    if not queued_first:
        doomed, spared = doomed_sig.delay(), spared_sig.delay()
    results.rpush(key, "go")
    assert held.get(timeout=WAIT_S) == "released"
    assert spared.get(timeout=WAIT_S) == stamps(batch="b2")
    with pytest.raises(Exception, match="revoked"):
        doomed.get(timeout=WAIT_S)
    assert doomed.state == "REVOKED"


def test_celery_client_stamps_reach_a_celeriac_worker(
    worker_factory: Factory,
    celery_side: StampTasks,
    celery_client: celery.Celery,
    results: redis.Redis,
) -> None:
    worker_factory("stamp_tasks", "-P", "threads", "-c", "1")
    check_stamps_travel(celery_side, celery, visitor_of(CeleryVisitor))
    check_revoke_by_stamps(celery_side, celery_client, results, queued_first=True)


def test_celeriac_client_stamps_reach_a_celery_worker(
    celery_worker_factory: Factory,
    our_side: StampTasks,
    celeriac_client: celeriac.Celery,
    results: redis.Redis,
) -> None:
    celery_worker_factory("celery_stamp_tasks", "-P", "threads", "-c", "1", *CELERY_WORKER_FLAGS)
    check_stamps_travel(our_side, celeriac, visitor_of(StampingVisitor))
    check_revoke_by_stamps(our_side, celeriac_client, results, queued_first=False)
