"""Chord callbacks and errbacks across implementations on one Redis: a Celery client's
chords with failing headers reach the errbacks of each body type on a celeriac worker, and
a header task whose result is a group gives the body nested lists both ways (the client
saves the header's structure, the worker that finishes the chord reads it)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import celery
import pytest
import redis

import celeriac
from tests.interop.peers import CELERY_WORKER_FLAGS, release_celery_backend
from tests.support.chord_error_tasks import ChordErrorTasks, define_tasks
from tests.support.workers import WorkerProcess

WAIT_S = 30.0
Factory = Callable[..., WorkerProcess]


@pytest.fixture
def celery_side(celery_client: celery.Celery) -> Iterator[ChordErrorTasks]:
    yield define_tasks(celery_client)
    release_celery_backend(celery_client)


@pytest.fixture
def our_side(celeriac_client: celeriac.Celery) -> ChordErrorTasks:
    return define_tasks(celeriac_client)


def recorded(results: redis.Redis, key: str, count: int) -> list[str]:
    labels: list[str] = []
    deadline = time.monotonic() + WAIT_S
    while len(labels) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"only {labels} of {count} errback runs under {key}")
        popped: Any = results.blpop([key], timeout=max(1, int(left)))
        if popped is not None:
            labels.append(popped[1].decode())
    return labels


def test_celery_client_chord_errors_reach_each_body_type_on_a_celeriac_worker(
    worker_factory: Factory,
    celery_side: ChordErrorTasks,
    celery_client: celery.Celery,
    results: redis.Redis,
) -> None:
    worker_factory("chord_error_tasks", "-P", "threads", "-c", "4")
    celery_client.conf.task_allow_error_cb_on_chord_header = True  # the False default warns
    t = celery_side
    header = [t.add.si(1, 1), t.fail.si("header-failed")]
    bodies = {
        "chain": celery.chain(t.identity.s(), t.identity.s()),
        "group": celery.group(t.identity.s(), t.identity.s()),
        "chord": celery.chord([t.identity.s(), t.identity.s()], t.identity.s()),
    }
    for kind, body in bodies.items():
        key = f"errbacks-{uuid.uuid4()}"
        body.link_error(t.record.si(key, kind))
        result = celery.chord(header, body).delay()
        runs = 2 if kind == "group" else 1
        assert recorded(results, key, runs) == [kind] * runs
        outcome = result.get(timeout=WAIT_S, propagate=False)  # read, so nothing stays pending
        if kind == "group":  # Celery's rule: each member holds the header task's own error
            assert [repr(error) for error in outcome] == [repr(ValueError("header-failed"))] * 2
        else:
            assert isinstance(outcome, celery.exceptions.ChordError)


def test_celery_client_nested_chord_gets_nested_lists_from_a_celeriac_worker(
    worker_factory: Factory, celery_side: ChordErrorTasks
) -> None:
    worker_factory("chord_error_tasks", "-P", "threads", "-c", "4")
    t = celery_side
    inner = celery.chain(t.identity.si(42), celery.group(t.identity.s(), t.identity.s()))
    assert celery.chord(celery.group(inner), t.identity.s()).delay().get(timeout=WAIT_S) == [
        [42, 42]
    ]


def test_celeriac_client_nested_chord_gets_nested_lists_from_a_celery_worker(
    celery_worker_factory: Factory, our_side: ChordErrorTasks
) -> None:
    celery_worker_factory("celery_chord_error_tasks", "-P", "solo", *CELERY_WORKER_FLAGS)
    t = our_side
    inner = celeriac.chain(t.identity.si(42), celeriac.group(t.identity.s(), t.identity.s()))
    nested = celeriac.chord([inner, t.identity.si(1)], t.identity.s()).delay()
    assert nested.get(timeout=WAIT_S) == [[42, 42], 1]


def test_celeriac_client_header_errbacks_run_on_a_celery_worker(
    celery_worker_factory: Factory,
    our_side: ChordErrorTasks,
    celeriac_client: celeriac.Celery,
    results: redis.Redis,
) -> None:
    celery_worker_factory("celery_chord_error_tasks", "-P", "solo", *CELERY_WORKER_FLAGS)
    celeriac_client.conf.task_allow_error_cb_on_chord_header = True
    t = our_side
    key = f"errbacks-{uuid.uuid4()}"
    pending = celeriac.chord([t.add.si(1, 1), t.fail.si("header-failed")])
    pending.link_error(t.record.si(key, "errback"))  # before the chord has its body
    pending(t.tsum.s())
    # the failed header task's, and the body's that cannot run
    assert recorded(results, key, 2) == ["errback", "errback"]
