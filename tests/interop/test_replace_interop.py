"""``Task.replace`` and ``add_to_chord`` across implementations on one Redis.

A Celery client's replacing tasks run on a celeriac worker; a Celery worker's replacement
messages run on a celeriac worker; a celeriac worker's replacement messages (including the
``celery.accumulate`` chord it makes of a group) run on a Celery worker, and ``add_to_chord``
counts on the Celery side's chord join."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import celery
import pytest

import celeriac
from tests.interop.peers import CELERY_WORKER_FLAGS, release_celery_backend
from tests.support.replace_tasks import ROUTES, ReplaceTasks, define_tasks
from tests.support.workers import WorkerProcess

WAIT_S = 30.0
Factory = Callable[..., WorkerProcess]


@pytest.fixture
def celery_side(celery_client: celery.Celery) -> Iterator[ReplaceTasks]:
    celery_client.conf.task_routes = ROUTES
    yield define_tasks(celery_client)
    release_celery_backend(celery_client)


@pytest.fixture
def our_side(celeriac_client: celeriac.Celery) -> ReplaceTasks:
    celeriac_client.conf.task_routes = ROUTES
    return define_tasks(celeriac_client)


def check_every_shape(t: ReplaceTasks, client: Any, canvas: Any) -> None:
    """The four shapes, links on the caller's side, a chain going on, a chord counting."""
    assert t.to_task.delay(1).get(timeout=WAIT_S) == 2
    assert t.to_chain.delay(1).get(timeout=WAIT_S) == 12
    assert t.to_group.delay(1).get(timeout=WAIT_S) == [2, 3]
    assert t.to_chord.delay(1).get(timeout=WAIT_S) == 5
    callback_id, errback_id = str(uuid.uuid4()), str(uuid.uuid4())
    linked = t.to_chord.apply_async((1,), link=t.identity.s().set(task_id=callback_id))
    assert linked.get(timeout=WAIT_S) == 5
    assert client.AsyncResult(callback_id).get(timeout=WAIT_S) == 5
    failed = t.to_failure.apply_async(("boom",), link_error=t.identity.s().set(task_id=errback_id))
    with pytest.raises(Exception, match="boom"):
        failed.get(timeout=WAIT_S)
    assert client.AsyncResult(errback_id).get(timeout=WAIT_S) == failed.id
    assert canvas.chain(t.to_task.s(1), t.add.s(100)).delay().get(timeout=WAIT_S) == 102
    header = [t.to_task.s(1), t.to_chain.s(1), t.to_group.s(1), t.to_chord.s(1)]
    assert canvas.chord(header)(t.tsum.s()).get(timeout=WAIT_S) == 24
    assert t.to_replacer.delay().get(timeout=WAIT_S) == 2


def test_celery_client_replacing_tasks_run_on_a_celeriac_worker(
    worker_factory: Factory, celery_side: ReplaceTasks, celery_client: celery.Celery
) -> None:
    worker_factory("replace_tasks", "-P", "threads", "-c", "4", "-Q", "celery,replacer")
    check_every_shape(celery_side, celery_client, celery)
    grown = celery.chord([celery_side.grow.s(1), celery_side.add.s(3, 3)])(celery_side.tsum.s())
    assert grown.get(timeout=WAIT_S) == 1 + 6 + 101


def test_a_celery_workers_replacements_run_on_a_celeriac_worker(
    worker_factory: Factory,
    celery_worker_factory: Factory,
    celery_side: ReplaceTasks,
    celery_client: celery.Celery,
) -> None:
    celery_worker_factory(
        "celery_replace_tasks", "-P", "solo", "-Q", "replacer", *CELERY_WORKER_FLAGS
    )
    worker_factory("replace_tasks", "-P", "threads", "-c", "4", "-Q", "celery")
    check_every_shape(celery_side, celery_client, celery)
    grown = celery.chord([celery_side.grow.s(1), celery_side.add.s(3, 3)])(celery_side.tsum.s())
    assert grown.get(timeout=WAIT_S) == 1 + 6 + 101


def test_a_celeriac_workers_replacements_run_on_a_celery_worker(
    worker_factory: Factory,
    celery_worker_factory: Factory,
    our_side: ReplaceTasks,
    celeriac_client: celeriac.Celery,
) -> None:
    worker_factory("replace_tasks", "-P", "threads", "-c", "4", "-Q", "replacer")
    celery_worker_factory(
        "celery_replace_tasks", "-P", "solo", "-Q", "celery", *CELERY_WORKER_FLAGS
    )
    check_every_shape(our_side, celeriac_client, celeriac)
    grown = celeriac.chord([our_side.grow.s(1), our_side.add.s(3, 3)])(our_side.tsum.s())
    assert grown.get(timeout=WAIT_S) == 1 + 6 + 101
