"""celeriac beat sends; a real Celery 5 worker runs what it sends (the messages are Celery's
wire format, with the slot-derived task ids)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

import celeriac
from celeriac.beat import PeriodicTasks, slot_task_id
from celeriac.beat.store import open_store
from tests.interop.peers import CELERY_WORKER_FLAGS
from tests.support.beat_ha import last_slot, start_beat, wait_until
from tests.support.workers import WorkerProcess

WAIT_S = 15.0


@pytest.fixture
def beat(redis_url: str) -> Iterator[WorkerProcess]:
    env = {"BEAT_EVERY_S": "1", "BEAT_TASK": "core.add", "BEAT_ARGS": "[2, 3]"}
    process = start_beat(redis_url, env, "--max-interval", "0.2")
    try:
        process.wait_for_log("beat: starting")
        yield process
    finally:
        process.stop()


def test_celery_worker_runs_what_celeriac_beat_sends(
    celery_worker_factory: Callable[..., WorkerProcess],
    celeriac_client: celeriac.Celery,
    redis_url: str,
    beat: WorkerProcess,
) -> None:
    celery_worker_factory("celery_core_tasks", "-P", "solo", *CELERY_WORKER_FLAGS)
    PeriodicTasks(celeriac_client).add("kw", "core.add", 1, kwargs={"x": 40, "y": 2})
    store = open_store(redis_url)
    wait_until(lambda: last_slot(store) > 0 and last_slot(store, "kw") > 0, 10, "both entries")
    tick, kw = last_slot(store) + 1, last_slot(store, "kw") + 1
    for k in range(2):
        result = celeriac_client.AsyncResult(slot_task_id("tick", tick + k))
        assert result.get(timeout=WAIT_S) == 5
        assert celeriac_client.AsyncResult(slot_task_id("kw", kw + k)).get(timeout=WAIT_S) == 42
    store.close()
