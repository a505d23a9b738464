"""Workflows across implementations on one Redis: a Celery 5 client's chain, group and
chord run on celeriac workers, ours run on Celery workers, and a celeriac worker and a
Celery worker finish one chord together (each side being the one that completes it)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import celery
import orjson
import pytest
import redis

import celeriac
from tests.interop.peers import CELERY_WORKER_FLAGS, release_celery_backend
from tests.support.canvas_tasks import CanvasTasks, define_tasks
from tests.support.workers import WorkerProcess

WAIT_S = 30.0
Factory = Callable[..., WorkerProcess]
COUNTERS = (".j", ".t", ".s", ".d")


@pytest.fixture
def celery_tasks(celery_client: celery.Celery) -> Iterator[CanvasTasks]:
    yield define_tasks(celery_client)
    release_celery_backend(celery_client)


@pytest.fixture
def our_tasks(celeriac_client: celeriac.Celery) -> CanvasTasks:
    return define_tasks(celeriac_client)


def counter_keys(results: redis.Redis, group_id: str) -> list[str]:
    found = results.scan_iter(match=f"celery-taskset-meta-{group_id}*")
    return sorted(key.decode() for key in found if key.decode().endswith(COUNTERS))


# a Celery client, celeriac workers
def test_celery_client_chain_runs_on_a_celeriac_worker(
    worker_factory: Factory, celery_tasks: CanvasTasks
) -> None:
    worker_factory("canvas_tasks", "-P", "solo")
    t = celery_tasks
    result = celery.chain(t.add.s(1, 2), t.add.s(10), t.mul.s(3)).apply_async()
    assert result.get(timeout=WAIT_S) == 39
    assert result.parent.get(timeout=WAIT_S) == 13
    assert (t.add.s(1, 2) | t.add.si(5, 5) | t.add.s(1)).delay().get(timeout=WAIT_S) == 11


def test_celery_client_group_and_chord_run_on_celeriac_workers(
    worker_factory: Factory, celery_tasks: CanvasTasks, results: redis.Redis
) -> None:
    worker_factory("canvas_tasks", "-P", "prefork", "-c", "2")
    t = celery_tasks
    grouped = celery.group(t.add.s(i, i) for i in range(20)).apply_async()
    assert grouped.get(timeout=WAIT_S) == [2 * i for i in range(20)]
    chorded = celery.chord(t.add.s(i, i) for i in range(20))(t.tsum.s())
    assert chorded.get(timeout=WAIT_S) == sum(2 * i for i in range(20))
    assert counter_keys(results, chorded.parent.id) == []
    nested = celery.chain(
        t.add.s(1, 1), celery.group(t.add.s(1), t.add.s(2)), t.tsum.s(), t.mul.s(10)
    ).apply_async()
    assert nested.get(timeout=WAIT_S) == 70


def test_celery_client_sees_a_chord_error_from_a_celeriac_worker(
    worker_factory: Factory, celery_tasks: CanvasTasks
) -> None:
    worker_factory("canvas_tasks", "-P", "solo")
    t = celery_tasks
    result = celery.chord([t.add.s(1, 1), t.fail.si("in-chord")])(t.tsum.s())
    failed_id = result.parent.results[1].id
    # Celery's get() raises the failed header task's own error first; the body holds this
    error = result.get(timeout=WAIT_S, propagate=False)
    assert isinstance(error, celery.exceptions.ChordError)
    assert str(error) == f"Dependency {failed_id} raised ValueError('in-chord')"
    assert result.state == "FAILURE"


def test_celery_client_map_and_link_error_run_on_a_celeriac_worker(
    worker_factory: Factory, celery_tasks: CanvasTasks, celery_client: celery.Celery
) -> None:
    worker_factory("canvas_tasks", "-P", "solo")
    t = celery_tasks
    assert t.add.starmap([(1, 2), (3, 4)]).delay().get(timeout=WAIT_S) == [3, 7]
    errback_id = str(uuid.uuid4())
    failed = t.fail.apply_async(("x",), link_error=t.identity.s().set(task_id=errback_id))
    with pytest.raises(ValueError):
        failed.get(timeout=WAIT_S)
    assert celery_client.AsyncResult(errback_id).get(timeout=WAIT_S) == failed.id


# a celeriac client, Celery workers
def test_celeriac_client_chain_group_and_chord_run_on_a_celery_worker(
    celery_worker_factory: Factory, our_tasks: CanvasTasks, results: redis.Redis
) -> None:
    celery_worker_factory("celery_canvas_tasks", "-P", "solo", *CELERY_WORKER_FLAGS)
    t = our_tasks
    assert celeriac.chain(t.add.s(1, 2), t.add.s(10), t.mul.s(3)).delay().get(timeout=WAIT_S) == 39
    grouped = celeriac.group(t.add.s(i, i) for i in range(20)).apply_async()
    assert grouped.get(timeout=WAIT_S) == [2 * i for i in range(20)]
    chorded = celeriac.chord(t.add.s(i, i) for i in range(20))(t.tsum.s())
    assert chorded.get(timeout=WAIT_S) == sum(2 * i for i in range(20))
    assert counter_keys(results, chorded.parent.id) == []
    nested = celeriac.chain(
        t.add.s(1, 1),
        celeriac.group(t.add.s(1), t.add.s(2)),
        t.tsum.s(),
        celeriac.chord([t.add.s(1), t.add.s(2)], t.tsum.s()),
    ).apply_async()
    assert nested.get(timeout=WAIT_S) == 8 + 9
    assert t.add.starmap([(1, 2), (3, 4)]).delay().get(timeout=WAIT_S) == [3, 7]


def test_celeriac_client_sees_a_chord_error_from_a_celery_worker(
    celery_worker_factory: Factory, our_tasks: CanvasTasks
) -> None:
    celery_worker_factory("celery_canvas_tasks", "-P", "solo", *CELERY_WORKER_FLAGS)
    t = our_tasks
    result = celeriac.chord([t.add.s(1, 1), t.fail.si("in-chord")])(t.tsum.s())
    failed_id = result.parent.results[1].id
    with pytest.raises(Exception) as raised:
        result.get(timeout=WAIT_S)
    assert type(raised.value).__name__ == "ChordError"
    assert str(raised.value) == f"Dependency {failed_id} raised ValueError('in-chord')"


# one chord, both kinds of worker
@pytest.mark.parametrize("finisher", ["celery", "celeriac"])
def test_mixed_workers_finish_one_chord_and_either_can_complete_it(
    finisher: str,
    worker_factory: Factory,
    celery_worker_factory: Factory,
    our_tasks: CanvasTasks,
    results: redis.Redis,
) -> None:
    """Header parts go to each worker's own queue; the finisher's parts are slow, so the
    finisher records the last part and sends the body (to the queue both consume)."""
    worker_factory("canvas_tasks", "-P", "solo", "-Q", "ours,celery")
    celery_worker_factory(
        "celery_canvas_tasks", "-P", "solo", "-Q", "theirs,celery", *CELERY_WORKER_FLAGS
    )
    queue_of = {"celeriac": "ours", "celery": "theirs"}
    t = our_tasks
    header: list[Any] = []
    for i in range(20):
        side = "celeriac" if i % 2 else "celery"
        seconds = 0.05 if side == finisher else 0.0
        header.append(t.tagged.s(i, seconds).set(queue=queue_of[side]))
    result = celeriac.chord(header)(t.tally.s())
    outcome = result.get(timeout=WAIT_S)
    assert outcome["sum"] == sum(range(20))
    assert outcome["parts_ran_on"] == ["celeriac", "celery"]
    stored = results.get(f"celery-task-meta-{result.id}")
    assert isinstance(stored, bytes)
    meta = orjson.loads(stored)
    last_part = meta["parent_id"]
    finisher_parts = {
        r.id
        for i, r in enumerate(result.parent.results)
        if (i % 2 == 1) == (finisher == "celeriac")
    }
    assert last_part in finisher_parts
    assert counter_keys(results, result.parent.id) == []


def test_chord_counted_partly_the_celery_5_6_way_completes_on_a_celeriac_worker(
    worker_factory: Factory, our_tasks: CanvasTasks, results: redis.Redis
) -> None:
    """Celery <= 5.6 workers record a part with a MULTI pipeline (ZADD .j, ZCOUNT .j,
    GET .t, GET .s, EXPIREs) and write no .d/.c keys. Two parts recorded that way (their
    messages went to a queue nobody consumes), two by a celeriac worker: the chord
    completes with all four results in order."""
    t = our_tasks
    header = [t.add.s(i, i).set(queue="old_workers" if i < 2 else "celery") for i in range(4)]
    result = celeriac.chord(header)(t.tsum.s().set(queue="body"))
    gid = result.parent.id
    for index, part in enumerate(result.parent.results[:2]):
        meta = {
            "status": "SUCCESS",
            "result": 2 * index,
            "traceback": None,
            "children": [],
            "date_done": "2026-01-01T00:00:00+00:00",
            "group_id": gid,
            "task_id": part.id,
        }
        results.set(f"celery-task-meta-{part.id}", orjson.dumps(meta))
        pipe = results.pipeline(transaction=True)
        pipe.zadd(
            f"celery-taskset-meta-{gid}.j",
            {orjson.dumps([1, part.id, "SUCCESS", 2 * index]): index},
        )
        pipe.zcount(f"celery-taskset-meta-{gid}.j", "-inf", "+inf")
        pipe.get(f"celery-taskset-meta-{gid}.t")
        pipe.get(f"celery-taskset-meta-{gid}.s")
        for suffix in (".j", ".t", ".s"):
            pipe.expire(f"celery-taskset-meta-{gid}{suffix}", 86400)
        pipe.execute()
    worker_factory("canvas_tasks", "-P", "solo", "-Q", "celery,body")
    assert result.get(timeout=WAIT_S) == 0 + 2 + 4 + 6
    assert counter_keys(results, gid) == []
