"""The asyncio pool on the in-process ``memory://`` broker.

The pool runs in a thread of the test (its loop runs there); tasks meet on asyncio events or
hand ``threading.Event``s to the test, so nothing waits on the clock.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import pytest

from celeriac import Celery
from celeriac.worker.pools.asyncio import AsyncioPool, LoopRunner, LoopSlots, new_event_loop
from celeriac.worker.pools.threads import DaemonThreadExecutor
from celeriac.worker.runtime import WorkerRuntime
from celeriac.worker.serve import make_context


@contextmanager
def running_pool(app: Celery, concurrency: int) -> Iterator[WorkerRuntime]:
    """An asyncio pool consuming ``celery`` in a thread; warm-stopped and joined on exit."""
    runtime = WorkerRuntime(app, "unit@host", "asyncio", concurrency, ["celery"])
    runner = threading.Thread(target=AsyncioPool(runtime).run)
    runner.start()
    try:
        yield runtime
    finally:
        runtime.stop.warm.set()
        runner.join(10)
        assert not runner.is_alive()


def meeting(parties: int) -> Callable[[], Any]:
    """A coroutine function that returns once *parties* calls are waiting in it together."""
    arrived: list[int] = []
    everyone: dict[str, asyncio.Event] = {}

    async def meet() -> None:
        event = everyone.setdefault("event", asyncio.Event())
        arrived.append(1)
        if len(arrived) == parties:
            event.set()
        await asyncio.wait_for(event.wait(), 10)

    return meet


def test_async_tasks_run_together_on_one_loop_thread_as_distinct_asyncio_tasks(
    app: Celery,
) -> None:
    meet = meeting(4)

    @app.task(name="unit.ameet", bind=True)
    async def ameet(self: Any) -> dict[str, Any]:
        await meet()  # times out unless all four are in flight at once
        return dict(self.request.place)

    results = [ameet.delay() for _ in range(4)]
    with running_pool(app, 4):
        places = [result.get(timeout=10) for result in results]
    assert len({place["thread_id"] for place in places}) == 1
    assert len({place["asyncio_task"] for place in places}) == 4
    assert all(place["asyncio_task"].startswith("unit.ameet[") for place in places)


def test_sync_task_runs_in_a_thread_other_than_the_loop(app: Celery) -> None:
    @app.task(name="unit.where", bind=True)
    def where(self: Any) -> dict[str, Any]:
        return dict(self.request.place)

    @app.task(name="unit.awhere", bind=True)
    async def awhere(self: Any) -> dict[str, Any]:
        return dict(self.request.place)

    sync_result, async_result = where.delay(), awhere.delay()
    with running_pool(app, 2):
        sync_place = sync_result.get(timeout=10)
        async_place = async_result.get(timeout=10)
    assert sync_place["thread_id"] != async_place["thread_id"]
    assert sync_place["asyncio_task"] is None


def test_no_more_than_concurrency_tasks_are_in_flight(app: Celery) -> None:
    in_flight: list[int] = []
    most: list[int] = [0]

    @app.task(name="unit.count")
    async def count() -> None:
        in_flight.append(1)
        most[0] = max(most[0], len(in_flight))
        await asyncio.sleep(0.02)
        in_flight.pop()

    results = [count.delay() for _ in range(6)]
    with running_pool(app, 2):
        for result in results:
            result.get(timeout=10)
    assert most[0] == 2


def test_warm_stop_lets_the_running_coroutine_finish(app: Celery) -> None:
    started = threading.Event()

    @app.task(name="unit.finishes")
    async def finishes() -> str:
        started.set()
        await asyncio.sleep(0.2)
        return "finished"

    result = finishes.delay()
    with running_pool(app, 2) as runtime:
        assert started.wait(10)
        runtime.stop.warm.set()
    assert result.get(timeout=1) == "finished"


def test_cold_stop_cancels_the_running_coroutine_and_requeues_its_late_ack_message(
    app: Celery,
) -> None:
    started = threading.Event()

    @app.task(name="unit.forever", acks_late=True)
    async def forever() -> None:
        started.set()
        await asyncio.sleep(60)

    result = forever.delay()
    with running_pool(app, 2) as runtime:
        assert started.wait(10)
        runtime.stop.cold.set()
        runtime.stop.warm.set()
    assert result.state == "PENDING"
    assert app.broker.queue_length("celery") == 1


def test_message_handed_over_after_a_stop_goes_back_without_running(app: Celery) -> None:
    ran: list[bool] = []

    @app.task(name="unit.never")
    async def never() -> None:
        ran.append(True)

    never.delay()
    [delivery] = app.broker.fetch(["celery"], 1, 0.0)
    runtime = WorkerRuntime(app, "unit@host", "asyncio", 1, ["celery"])
    runtime.stop.warm.set()
    loop = asyncio.new_event_loop()
    io, tasks = DaemonThreadExecutor(1, "unit-io"), DaemonThreadExecutor(1, "unit-task")
    try:
        slots = LoopSlots(1)
        ctx = make_context(runtime, slots, "asyncio")
        runner = LoopRunner(ctx, slots, runtime.stop, loop, io, tasks)
        slots.submit(partial(runner.hand_over, ctx, delivery))
        assert loop.run_until_complete(runner.drain(10))
        assert runner.requeue_unfinished() == 1
    finally:
        loop.close()
        io.shutdown()
        tasks.shutdown()
    assert ran == []
    assert slots.free() == 1
    assert app.broker.queue_length("celery") == 1


def test_loop_is_uvloop_when_it_is_installed() -> None:
    pytest.importorskip("uvloop")
    loop = new_event_loop()
    try:
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()
