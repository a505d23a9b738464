"""The worker's flow check and the client's unique check, on the in-process memory broker:
a task over its limit or cap is parked in the broker (RECEIVED with parked_until), not run
and not held; a failing key fails one task; unique sends return the first result."""

from __future__ import annotations

import time
from typing import Any

import pytest

from celeriac import Celery, states
from celeriac.flow.runtime import flow_of
from celeriac.flow.runtime import stats as flow_stats
from celeriac.worker.execute import ExecContext, handle


def ctx_of(app: Celery) -> ExecContext:
    return ExecContext(app=app, nodename="flow@unit", place_base={"pool": "solo"})


def drain(app: Celery, ctx: ExecContext) -> int:
    """Handle every message waiting now; how many were handed over."""
    count = 0
    while deliveries := app.broker.fetch(["celery"], 100, 0.0):
        for delivery in deliveries:
            handle(ctx, delivery)
            count += 1
    return count


def parked_now(app: Celery) -> int:
    """Messages parked broker-side: promote everything and count what comes back."""
    app.broker.promote_due(time.time() + 3600)
    return app.broker.queue_length("celery")


@pytest.fixture
def ran() -> list[Any]:
    return []


def test_over_limit_tasks_are_parked_broker_side_with_received_state(
    app: Celery, ran: list[Any]
) -> None:
    @app.task(name="flow.slow", rate_limit="1/m")
    def slow(i: int) -> None:
        ran.append(i)

    results = [slow.delay(i) for i in range(3)]
    drain(app, ctx_of(app))
    assert ran == [0]
    for result in results[1:]:
        meta = app.backend.get_meta(result.id) or {}
        assert meta["status"] == states.RECEIVED
        assert meta["parked_until"]
    assert flow_stats(app)["tasks"]["flow.slow"]["parked"] == 2
    # nothing comes back before its token: the next wake-up is a minute away, not a poll
    next_due = app.broker.promote_due(time.time())
    assert next_due is not None and next_due >= time.time() + 59
    assert app.broker.queue_length("celery") == 0
    assert parked_now(app) == 2


def test_worker_disable_rate_limits_is_honoured(app: Celery, ran: list[Any]) -> None:
    app.conf.worker_disable_rate_limits = True

    @app.task(name="flow.slow2", rate_limit="1/m")
    def slow(i: int) -> None:
        ran.append(i)

    for i in range(3):
        slow.delay(i)
    drain(app, ctx_of(app))
    assert ran == [0, 1, 2]


def test_changed_rate_limit_takes_effect_at_the_next_task(app: Celery, ran: list[Any]) -> None:
    @app.task(name="flow.changed")
    def changed(i: int) -> None:
        ran.append(i)

    ctx = ctx_of(app)
    changed.delay(0)
    changed.delay(1)
    drain(app, ctx)
    changed.rate_limit = "1/h"  # what the rate_limit command sets in every process
    changed.delay(2)
    changed.delay(3)
    drain(app, ctx)
    assert ran == [0, 1, 2]
    changed.rate_limit = "100/s"  # raised: new tasks do not queue behind the old rate
    changed.delay(4)
    drain(app, ctx)
    assert ran == [0, 1, 2, 4]


def test_capped_task_waits_for_a_slot_without_running(app: Celery, ran: list[Any]) -> None:
    @app.task(name="flow.capped", max_concurrency=1)
    def capped(i: int) -> None:
        ran.append(i)

    store = flow_of(app).store
    assert store.acquire("flow.capped", "someone-else", "other-owner", 1, 30.0, time.time())
    capped.delay(1)
    drain(app, ctx_of(app))
    assert ran == []
    assert parked_now(app) == 1
    store.release("flow.capped", "someone-else", "other-owner", time.time())
    drain(app, ctx_of(app))
    assert ran == [1]


def test_key_callable_that_raises_fails_that_task_only(app: Celery, ran: list[Any]) -> None:
    def no_key(i: int) -> str:
        raise LookupError("no tenant")

    @app.task(name="flow.keyed", rate_limit="100/s", rate_limit_key=no_key)
    def keyed(i: int) -> None:
        ran.append(i)

    @app.task(name="flow.free")
    def free(i: int) -> None:
        ran.append(i)

    bad = keyed.delay(1)
    free.delay(2)
    drain(app, ctx_of(app))
    assert ran == [2]
    meta = app.backend.get_meta(bad.id) or {}
    assert meta["status"] == states.FAILURE
    assert "rate_limit_key of task 'flow.keyed' failed" in str(meta["result"])


def test_unique_send_returns_the_first_result_and_sends_nothing(
    app: Celery, ran: list[Any]
) -> None:
    @app.task(name="flow.once", unique_for=60, unique_key="{user}")
    def once(user: str) -> None:
        ran.append(user)

    first = once.delay(user="ann")
    assert once.delay(user="ann").id == first.id
    other = once.delay(user="bob")
    assert other.id != first.id
    assert app.broker.queue_length("celery") == 2
    drain(app, ctx_of(app))
    assert ran == ["ann", "bob"]
    again = once.delay(user="ann")  # the first finished: the lock is free
    assert again.id != first.id


def test_unique_lock_freed_when_the_task_fails(app: Celery) -> None:
    @app.task(name="flow.once_fails", unique_for=60)
    def once_fails() -> None:
        raise ValueError("boom")

    first = once_fails.delay()
    drain(app, ctx_of(app))
    assert (app.backend.get_meta(first.id) or {})["status"] == states.FAILURE
    assert once_fails.delay().id != first.id


def test_unique_lock_freed_when_the_task_is_revoked(app: Celery) -> None:
    @app.task(name="flow.once_revoked", unique_for=60)
    def once_revoked() -> None: ...

    first = once_revoked.delay()
    ctx = ctx_of(app)
    ctx.revoked.add(first.id)
    drain(app, ctx)
    assert (app.backend.get_meta(first.id) or {})["status"] == states.REVOKED
    assert once_revoked.delay().id != first.id


def test_unique_lock_expires_after_unique_for(app: Celery) -> None:
    @app.task(name="flow.once_short", unique_for=0.05)
    def once_short() -> None: ...

    first = once_short.delay()
    time.sleep(0.1)  # the lock's own lifetime is what is tested
    assert once_short.delay().id != first.id


def test_delay_many_of_a_unique_task_sends_one_per_key(app: Celery) -> None:
    @app.task(name="flow.once_many", unique_for=60, unique_key="{user}")
    def once_many(user: str) -> None: ...

    results = once_many.delay_many([("ann",), ("ann",), ("bob",)])
    assert results[0].id == results[1].id != results[2].id
    assert app.broker.queue_length("celery") == 2
