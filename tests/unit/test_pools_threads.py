"""The threads pool on the in-process ``memory://`` broker: slots, threads, and whole runs."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from celeriac import Celery
from celeriac.worker.pools.threads import DaemonThreadExecutor, ThreadPool, ThreadSlots
from celeriac.worker.runtime import WorkerRuntime


@pytest.fixture
def slots() -> Iterator[ThreadSlots]:
    pool_slots = ThreadSlots(3)
    yield pool_slots
    pool_slots.close()


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # never leave a pool thread blocked behind a failed assertion


def blocked_until(event: threading.Event) -> Any:
    def job() -> None:
        assert event.wait(10)

    return job


def test_free_counts_submitted_jobs_until_they_end(
    slots: ThreadSlots, release: threading.Event
) -> None:
    slots.submit(blocked_until(release))
    slots.submit(blocked_until(release))
    assert slots.free() == 1
    release.set()
    assert slots.join(10)
    assert slots.free() == 3


def test_join_reports_a_job_still_running_at_the_timeout(
    slots: ThreadSlots, release: threading.Event
) -> None:
    slots.submit(blocked_until(release))
    assert not slots.join(0.05)


def test_submit_beyond_capacity_is_refused(slots: ThreadSlots, release: threading.Event) -> None:
    for _ in range(3):
        slots.submit(blocked_until(release))
    with pytest.raises(RuntimeError, match="submit only when free"):
        slots.submit(blocked_until(release))


def test_pool_threads_are_daemons_so_a_cold_stop_does_not_wait_for_them(
    slots: ThreadSlots,
) -> None:
    seen: list[bool] = []
    slots.submit(lambda: seen.append(threading.current_thread().daemon))
    assert slots.join(10)
    assert seen == [True]


def test_executor_reuses_an_idle_thread_instead_of_starting_another() -> None:
    executor = DaemonThreadExecutor(4, "unit-exec")
    try:
        names = [executor.submit(lambda: threading.current_thread().name).result(10)]
        names.append(executor.submit(lambda: threading.current_thread().name).result(10))
    finally:
        executor.shutdown()
    assert names == ["unit-exec-1", "unit-exec-1"]


def test_executor_hands_a_job_exception_to_its_future() -> None:
    executor = DaemonThreadExecutor(1, "unit-exec")
    try:
        future = executor.submit(int, "not a number")
        with pytest.raises(ValueError, match="not a number"):
            future.result(10)
    finally:
        executor.shutdown()


def test_thread_pool_runs_tasks_at_once_in_distinct_threads_of_this_process(app: Celery) -> None:
    barrier = threading.Barrier(3)

    @app.task(name="unit.meet", bind=True)
    def meet(self: Any) -> dict[str, Any]:
        barrier.wait(timeout=10)  # breaks unless three tasks run at the same time
        return dict(self.request.place)

    results = [meet.delay() for _ in range(3)]
    runtime = WorkerRuntime(app, "unit@host", "threads", 3, ["celery"])
    runner = threading.Thread(target=ThreadPool(runtime).run)
    runner.start()
    try:
        places = [result.get(timeout=10) for result in results]
    finally:
        runtime.stop.warm.set()
        runner.join(10)
    assert {place["pid"] for place in places} == {os.getpid()}
    assert len({place["thread_id"] for place in places}) == 3
    assert not runner.is_alive()


def test_thread_pool_enforces_time_limits_so_it_does_not_warn_about_them(
    app: Celery, caplog: pytest.LogCaptureFixture
) -> None:
    # enforced by the watchdog (worker/timelimits.py; tests/integration/test_time_limits.py)
    runtime = WorkerRuntime(app, "unit@host", "threads", 2, ["celery"], time_limit_s=5.0)
    runtime.stop.warm.set()  # stopped before it starts: run() returns at once
    with caplog.at_level(logging.WARNING, logger="celeriac.worker.serve"):
        assert ThreadPool(runtime).run() == 0
    assert "does not enforce" not in caplog.text
