"""How deep a consumer fetches: Celery's count, deeper only while the tasks are short."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from celeriac import Celery
from celeriac.worker.prefetch import MAX_HELD, PrefetchWindow
from celeriac.worker.worker import Worker
from tests.support.workers import run_solo_pool


def paced(window: PrefetchWindow, per_task_s: float, batches: int, size: int) -> None:
    """Feed *batches* fetches of *size* messages, each batch taking *per_task_s* a message."""
    clock = 100.0
    for _ in range(batches):
        window.fetched(size, clock, clock)
        clock += per_task_s * size


def test_holds_celerys_count_until_it_knows_the_pace() -> None:
    window = PrefetchWindow(0.01)
    assert window.target(4) == 4
    window.fetched(4, 0.0, 0.0)  # one batch under way: its pace is not known yet
    assert window.target(4) == 4


def test_short_tasks_deepen_the_fetch_to_about_a_window_of_work() -> None:
    window = PrefetchWindow(0.01)
    paced(window, 0.0005, batches=3, size=4)  # 0.5 ms a task: 20 fit in 10 ms
    assert window.target(4) == 20


def test_very_short_tasks_stop_at_the_cap() -> None:
    window = PrefetchWindow(0.01)
    paced(window, 0.00001, batches=3, size=4)
    assert window.target(4) == MAX_HELD


def test_one_slow_batch_brings_it_back_to_the_count_at_once() -> None:
    window = PrefetchWindow(0.01)
    paced(window, 0.0001, batches=5, size=4)
    assert window.target(4) > 4
    window.fetched(64, 200.0, 200.0)
    window.fetched(4, 200.0 + 64 * 0.05, 203.2)  # that batch took 50 ms a task
    assert window.target(4) == 4


def test_a_fast_batch_after_slow_ones_deepens_only_gradually() -> None:
    window = PrefetchWindow(0.01)
    paced(window, 0.01, batches=3, size=4)  # 10 ms a task
    assert window.target(4) == 4
    window.fetched(4, 300.0, 300.0)
    window.fetched(4, 300.0 + 4 * 0.0001, 300.0004)  # one fast batch: the pace halves
    assert window.target(4) == 4


def test_waiting_for_work_does_not_count_as_pace() -> None:
    window = PrefetchWindow(0.01)
    paced(window, 0.0001, batches=3, size=4)
    deep = window.target(4)
    window.idle()  # the next fetch found the queue dry; the wait is not the tasks' pace
    window.fetched(4, 900.0, 900.0)
    window.fetched(4, 900.0 + 4 * 0.0001, 900.0004)
    assert window.target(4) == deep


@pytest.mark.parametrize("floor", [1, 2])
def test_never_below_the_floor_and_never_deeper_when_the_floor_is_one(floor: int) -> None:
    window = PrefetchWindow(0.01)
    paced(window, 0.00001, batches=3, size=4)
    assert window.target(floor) == (1 if floor == 1 else MAX_HELD)


def test_a_window_of_zero_holds_exactly_celerys_count() -> None:
    window = PrefetchWindow(0.0)
    paced(window, 0.00001, batches=3, size=4)
    assert window.target(4) == 4


@pytest.mark.parametrize("bad", [-1, "soon", float("nan")])
def test_a_bad_window_setting_is_refused_with_what_to_do(app: Celery, bad: Any) -> None:
    app.conf.worker_prefetch_window = bad
    with pytest.raises(ValueError, match="worker_prefetch_window must be a number of seconds"):
        Worker(app, pool="solo", banner=False)


def _drain(app: Celery, count: int, multiplier: int, window_s: float, pause_s: float) -> list[int]:
    """Run a solo pool over *count* tasks; return what each fetch asked for."""
    done = threading.Event()
    finished: list[int] = []

    @app.task(name="unit.step")
    def step(i: int) -> None:
        if pause_s:
            time.sleep(pause_s)
        finished.append(i)
        if len(finished) == count:
            done.set()

    app.send_many("unit.step", [(i,) for i in range(count)])
    asked: list[int] = []
    broker = app.broker
    real_fetch = broker.fetch

    def counting_fetch(queues: Any, max_count: int, timeout_s: float, acks: Any = ()) -> Any:
        got = real_fetch(queues, max_count, timeout_s, acks)
        if got:
            asked.append(max_count)
        return got

    broker.fetch = counting_fetch  # type: ignore[method-assign]
    run_solo_pool(
        app,
        done,
        multiplier=multiplier,
        window_s=window_s,
        what=lambda: f"only {len(finished)} of {count} tasks ran",
    )
    assert sorted(finished) == list(range(count))
    return asked


def test_a_solo_worker_fetches_deeper_while_tasks_are_short(app: Celery) -> None:
    asked = _drain(app, 600, multiplier=4, window_s=0.01, pause_s=0)
    assert max(asked) > 4
    assert len(asked) < 600 / 4


def test_a_solo_worker_holds_celerys_count_when_tasks_are_slow(app: Celery) -> None:
    asked = _drain(app, 12, multiplier=4, window_s=0.01, pause_s=0.02)
    assert max(asked) <= 4


def test_prefetch_multiplier_one_is_celerys_fair_setting_and_never_deepens(app: Celery) -> None:
    asked = _drain(app, 200, multiplier=1, window_s=0.01, pause_s=0)
    assert max(asked) == 1
