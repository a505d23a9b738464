"""Beat on the memory:// broker with a controlled clock: slots, races, catch-up, run-time
changes and bad input."""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from celeriac import Celery
from celeriac.beat import Beat, PeriodicTasks, slot_task_id
from celeriac.beat.entries import from_json, to_json
from celeriac.beat.store import MemoryBeatStore, Pending
from celeriac.errors import InvalidSchedule
from celeriac.schedules import crontab, solar
from tests.unit.helpers import take_envelopes

START = datetime(2026, 6, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp()


class Clock:
    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def sent_ids(app: Celery) -> list[str]:
    """Every task id waiting on the default queue, oldest first (fetched 1,000 at a time)."""
    found: list[str] = []
    while batch := [envelope["headers"]["id"] for envelope in take_envelopes(app)]:
        found += batch
    return found


def every(app: Celery, seconds: float, name: str = "tick") -> None:
    app.conf.beat_schedule = {name: {"task": "unit.tick", "schedule": seconds}}


def test_each_slot_is_sent_once_with_an_id_derived_from_entry_and_slot(app: Celery) -> None:
    every(app, 10)
    clock = Clock(START + 3)
    beat = Beat(app, clock=clock)
    beat.tick()  # records where the new entry's slots start: nothing due yet
    assert sent_ids(app) == []
    for step in range(1, 40):  # two ticks in every slot
        clock.now_s = START + 3 + step * 5
        beat.tick()
    slots = [START + 10 * k for k in range(1, 20)]
    assert sent_ids(app) == [slot_task_id("tick", s) for s in slots]


def test_first_run_waits_one_period_and_tick_says_when(app: Celery) -> None:
    every(app, 10)
    clock = Clock(START + 3)
    beat = Beat(app, clock=clock, max_interval_s=60)
    beat.tick()
    assert beat.tick() == pytest.approx(7.0)
    assert Beat(app, clock=clock).tick() == pytest.approx(5.0)  # beat_max_loop_interval


def test_two_beats_racing_on_one_store_send_each_slot_once(app: Celery) -> None:
    every(app, 1)
    clock = Clock(START + 0.5)
    first, second = Beat(app, clock=clock), Beat(app, clock=clock)
    for step in range(60):
        clock.now_s = START + 0.5 + step * 0.25
        (first if step % 3 else second).tick()
        (second if step % 3 else first).tick()
    ids = sent_ids(app)
    assert len(ids) == len(set(ids)) == 15
    assert ids == [slot_task_id("tick", START + k) for k in range(1, 16)]


def test_a_claim_whose_beat_died_before_sending_is_sent_by_another(app: Celery) -> None:
    every(app, 10)
    clock = Clock(START + 1)
    beat = Beat(app, clock=clock)
    beat.tick()
    store = beat.store
    slot = f"{START + 10:.6f}"
    dead = Pending("tick", slot, START + 11 + 10, "beat.999@gone")
    assert store.claim("tick", f"{START:.6f}", slot, dead)  # claimed, never sent
    clock.now_s = START + 12
    beat.tick()
    assert sent_ids(app) == []  # the lease still runs
    clock.now_s = START + 22
    beat.tick()
    assert sent_ids(app) == [slot_task_id("tick", START + 10), slot_task_id("tick", START + 20)]
    clock.now_s = START + 35
    beat.tick()
    assert sent_ids(app) == [slot_task_id("tick", START + 30)]


def _after_outage(app: Celery, policy: str) -> list[str]:
    app.conf.beat_catch_up = policy
    every(app, 10)
    clock = Clock(START + 1)
    beat = Beat(app, clock=clock)
    beat.tick()
    clock.now_s = START + 10.2
    beat.tick()
    assert sent_ids(app) == [slot_task_id("tick", START + 10)]
    clock.now_s = START + 100 + 2  # every beat was down for 90 s
    beat.tick()
    return sent_ids(app)


def test_catch_up_once_runs_a_missed_entry_once(app: Celery) -> None:
    ids = _after_outage(app, "once")
    # the newest missed run (90 s ago... 10 s ago), then the one due 2 s ago, on time
    assert ids == [slot_task_id("tick", START + 90), slot_task_id("tick", START + 100)]


def test_catch_up_none_skips_missed_runs(app: Celery) -> None:
    assert _after_outage(app, "none") == [slot_task_id("tick", START + 100)]


def test_catch_up_all_runs_every_missed_slot(app: Celery) -> None:
    ids = _after_outage(app, "all")
    assert ids == [slot_task_id("tick", START + 10 * k) for k in range(2, 11)]


def test_catch_up_once_by_default_for_a_daily_crontab(app: Celery) -> None:
    app.conf.beat_schedule = {"nightly": {"task": "unit.tick", "schedule": crontab(0, 3)}}
    clock = Clock(START)
    beat = Beat(app, clock=clock)
    beat.tick()
    clock.now_s = START + 5 * 86400  # down for five nights
    beat.tick()
    last_night = datetime(2026, 6, 6, 3, 0, tzinfo=timezone.utc).timestamp()
    assert sent_ids(app) == [slot_task_id("nightly", last_night)]


def test_paused_entry_sends_nothing_and_resumes_without_catching_up(app: Celery) -> None:
    every(app, 10)
    clock = Clock(START + 1)
    beat = Beat(app, clock=clock)
    manager = PeriodicTasks(app, store=beat.store)
    beat.tick()
    manager.pause("tick")
    for step in range(1, 10):
        clock.now_s = START + 1 + step * 10
        beat.tick()
    assert sent_ids(app) == []
    assert [e.is_paused for e in manager.list()] == [True]
    manager.resume("tick")
    clock.now_s = START + 100.5
    beat.tick()
    assert sent_ids(app) == [slot_task_id("tick", START + 100)]


def test_entries_added_at_run_time_are_sent_and_removed_ones_stop(app: Celery) -> None:
    clock = Clock(START + 1)
    beat = Beat(app, clock=clock)
    manager = PeriodicTasks(app, store=beat.store)
    manager.add("added", "unit.echo", 5, args=[1, "a"], kwargs={"k": 2}, options={"queue": "q2"})
    beat.tick()
    clock.now_s = START + 5.1
    beat.tick()
    envelopes = take_envelopes(app, "q2")
    assert [e["headers"]["id"] for e in envelopes] == [slot_task_id("added", START + 5)]
    assert envelopes[0]["headers"]["task"] == "unit.echo"
    (state,) = manager.list()
    assert (state.name, state.source, state.is_paused) == ("added", "runtime", False)
    assert state.last_run_at == datetime.fromtimestamp(START + 5, timezone.utc)
    assert state.next_run_at == datetime.fromtimestamp(START + 10, timezone.utc)
    manager.remove("added")
    clock.now_s = START + 30
    beat.tick()
    assert take_envelopes(app, "q2") == []
    assert manager.list() == []


def test_changes_through_one_manager_reach_a_beat_with_its_own_store_object(app: Celery) -> None:
    clock = Clock(START + 1)
    beat = Beat(app, clock=clock)
    PeriodicTasks(app).add("other", "unit.tick", 2.0)  # opens the same memory:// store
    beat.tick()
    clock.now_s = START + 2.5
    beat.tick()
    assert sent_ids(app) == [slot_task_id("other", START + 2)]


def test_settings_entries_cannot_be_removed_or_shadowed(app: Celery) -> None:
    every(app, 10)
    manager = PeriodicTasks(app)
    with pytest.raises(InvalidSchedule, match=r"beat_schedule.*pause it"):
        manager.remove("tick")
    with pytest.raises(InvalidSchedule, match="defined in beat_schedule"):
        manager.add("tick", "unit.other", 5)
    with pytest.raises(InvalidSchedule, match="no periodic task named 'nope'"):
        manager.pause("nope")
    with pytest.raises(InvalidSchedule, match="no periodic task named 'nope'"):
        manager.remove("nope")


def test_run_time_entry_with_arguments_that_are_not_json_is_refused(app: Celery) -> None:
    with pytest.raises(InvalidSchedule, match="must be JSON"):
        PeriodicTasks(app).add("bad", "unit.tick", 5, args=[object()])
    assert PeriodicTasks(app).list() == []


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"schedule": 5}, "needs 'task'"),
        ({"task": "t"}, "needs 'schedule'"),
        ({"task": "t", "schedule": "5"}, "use seconds"),
        ({"task": "t", "schedule": 0}, "above 0"),
        ({"task": "t", "schedule": 5, "args": "x"}, "use a list or tuple"),
        ({"task": "t", "schedule": 5, "kwargs": [1]}, "dict with string keys"),
        ({"task": "t", "schedule": 5, "options": {1: 2}}, "dict with string keys"),
        ({"task": "t", "schedule": 5, "every": 3}, "unknown key.*every.*the keys are"),
        ("t", "write a dict like"),
    ],
)
def test_bad_beat_schedule_entries_are_named_with_what_to_write(
    app: Celery, entry: object, message: str
) -> None:
    app.conf.beat_schedule = {"broken": entry}
    with pytest.raises(InvalidSchedule, match=message) as caught:
        Beat(app)
    assert "beat_schedule['broken']" in str(caught.value)


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("beat_catch_up", "some", "use 'once'"),
        ("beat_catch_up_after", -1, "seconds above 0"),
        ("beat_claim_timeout", "x", "seconds above 0"),
        ("beat_schedule", [1], "use a dict"),
    ],
)
def test_bad_beat_settings_are_refused(
    app: Celery, setting: str, value: object, message: str
) -> None:
    app.conf[setting] = value
    with pytest.raises(InvalidSchedule, match=message):
        Beat(app)


@pytest.mark.parametrize(
    "schedule",
    [
        7.5,
        timedelta(hours=1),
        crontab("*/15", "9-17", day_of_week="mon-fri"),
        solar("sunset", 59.9, 10.7),
    ],
)
def test_run_time_entries_keep_their_schedule_through_json(app: Celery, schedule: object) -> None:
    spec = {"task": "t", "schedule": schedule, "args": [1], "kwargs": {"a": 1}, "options": {}}
    from celeriac.beat.entries import entry_from_settings

    entry = entry_from_settings(app, "e", spec)
    again = from_json(app, "e", to_json(entry))
    assert again.schedule == entry.schedule
    assert (again.task, again.args, again.kwargs, again.source) == ("t", (1,), {"a": 1}, "runtime")


def test_a_broken_run_time_entry_is_skipped_and_the_rest_still_run(app: Celery) -> None:
    every(app, 10)
    clock = Clock(START + 1)
    beat = Beat(app, clock=clock)
    assert isinstance(beat.store, MemoryBeatStore)
    beat.store.put_entry("garbled", "{not json")
    beat.tick()
    clock.now_s = START + 10.5
    beat.tick()
    assert sent_ids(app) == [slot_task_id("tick", START + 10)]


def test_each_beat_app_on_another_memory_url_has_its_own_store() -> None:
    one = Celery("a", broker="memory://beat-one", set_as_current=False)
    two = Celery("b", broker="memory://beat-two", set_as_current=False)
    PeriodicTasks(one).add("only-one", "t", 5)
    assert [e.name for e in PeriodicTasks(one).list()] == ["only-one"]
    assert PeriodicTasks(two).list() == []
    counts = Counter(e.name for e in PeriodicTasks(one).list())
    assert counts == {"only-one": 1}


def test_entry_options_beat_cannot_send_are_refused(app: Celery) -> None:
    app.conf.beat_schedule = {"e": {"task": "t", "schedule": 5, "options": {"quue": "x"}}}
    wanted = r"\['options'\] has unknown option\(s\) quue; apply_async takes.*countdown"
    with pytest.raises(InvalidSchedule, match=wanted):
        Beat(app)
    app.conf.beat_schedule = {"e": {"task": "t", "schedule": 5, "options": {"task_id": "x"}}}
    with pytest.raises(InvalidSchedule, match="task id comes from the entry"):
        Beat(app)


def test_a_run_that_cannot_be_sent_is_logged_and_the_others_still_go(
    app: Celery, caplog: pytest.LogCaptureFixture
) -> None:
    app.conf.beat_schedule = {
        "broken": {"task": "unit.a", "schedule": 10, "options": {"countdown": "soon"}},
        "fine": {"task": "unit.b", "schedule": 10},
    }
    clock = Clock(START + 1)
    beat = Beat(app, clock=clock)
    beat.tick()
    clock.now_s = START + 10.5
    beat.tick()
    assert sent_ids(app) == [slot_task_id("fine", START + 10)]
    assert "unit.a[" in caplog.text and "countdown must be a number" in caplog.text
    clock.now_s = START + 60  # far past any claim's lease: nothing left pending to retry
    assert beat.store.expired(clock.now_s) == []


def test_worker_beat_fires_beat_embedded_init_and_stops_with_the_worker(app: Celery) -> None:
    from celeriac.beat.embedded import EmbeddedBeat
    from celeriac.signals import beat_embedded_init

    every(app, 0.05)
    seen: list[object] = []

    def receiver(sender: object = None, **kwargs: object) -> None:
        seen.append(sender)

    beat_embedded_init.connect(receiver)
    try:
        embedded = EmbeddedBeat.start(app, worker=None)
    finally:
        beat_embedded_init.disconnect(receiver)
    try:
        assert seen == [embedded.service]
        deadline = time.monotonic() + 10
        while embedded.service.sent_count < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert embedded.service.sent_count >= 2
    finally:
        embedded.stop()
    assert not embedded._thread.is_alive()


def test_a_dead_beats_claim_is_not_sent_again_once_a_worker_ran_it(app: Celery) -> None:
    every(app, 10)
    clock = Clock(START + 1)
    beat = Beat(app, clock=clock)
    beat.tick()
    slot = f"{START + 10:.6f}"
    dead = Pending("tick", slot, START + 11, "beat.999@gone")
    assert beat.store.claim("tick", f"{START:.6f}", slot, dead)  # sent, then died unconfirmed
    task_id = slot_task_id("tick", START + 10)
    app.backend.store(task_id, {"task_id": task_id, "status": "SUCCESS", "result": 1}, None)
    clock.now_s = START + 12
    beat.tick()
    assert sent_ids(app) == []
    assert beat.store.expired(START + 1000) == []  # taken over and confirmed


def test_a_slow_live_beats_claim_is_left_to_it_for_two_more_timeouts(app: Celery) -> None:
    every(app, 100)
    clock = Clock(START + 1)
    beat = Beat(app, clock=clock)  # beat_claim_timeout: 10 s
    beat.tick()
    slot = f"{START + 100:.6f}"
    alive = f"beat.1.{os.getppid()}@{socket.gethostname()}"  # a live process of this host
    assert beat.store.claim("tick", f"{START:.6f}", slot, Pending("tick", slot, START + 110, alive))
    clock.now_s = START + 125  # lease over, but its beat still runs
    beat.tick()
    assert sent_ids(app) == []
    clock.now_s = START + 131  # two claim timeouts later: taken over
    beat.tick()
    assert sent_ids(app) == [slot_task_id("tick", START + 100)]


def test_beat_on_a_broker_it_cannot_keep_its_schedule_on_says_which_to_use() -> None:
    from celeriac.beat.store import open_store
    from celeriac.errors import ConfigurationError

    with pytest.raises(
        ConfigurationError, match=r"amqp://; use a redis://, sentinel://, sqlite:/// or memory"
    ):
        open_store("amqp://guest@localhost//")


def test_an_entry_with_an_unreadable_last_run_is_logged_and_the_others_still_go(
    app: Celery, caplog: pytest.LogCaptureFixture
) -> None:
    app.conf.beat_schedule = {
        "garbled": {"task": "unit.a", "schedule": 10},
        "fine": {"task": "unit.b", "schedule": 10},
    }
    clock = Clock(START + 1)
    beat = Beat(app, clock=clock)
    assert beat.store.claim("garbled", None, "not-a-time", None)
    beat.tick()
    clock.now_s = START + 10.5
    beat.tick()
    assert sent_ids(app) == [slot_task_id("fine", START + 10)]
    assert "beat: garbled cannot be scheduled" in caplog.text


def test_catch_up_once_sends_one_run_after_an_outage_longer_than_a_tick_looks_at(
    app: Celery,
) -> None:
    app.conf.beat_schedule = {"minutely": {"task": "unit.m", "schedule": crontab()}}
    clock = Clock(START)
    beat = Beat(app, clock=clock)
    beat.tick()
    clock.now_s = START + 80 * 86400 + 30  # 115,200 missed minutes: more than one tick
    while beat.tick() == 0.0:
        pass
    assert sent_ids(app) == [slot_task_id("minutely", START + 80 * 86400)]


def test_catch_up_all_sends_a_long_backlog_in_order_over_several_ticks(app: Celery) -> None:
    app.conf.beat_catch_up = "all"
    every(app, 1)
    clock = Clock(START + 0.5)
    beat = Beat(app, clock=clock)
    beat.tick()
    clock.now_s = START + 2500.5
    ticks = 1
    while beat.tick() == 0.0:
        ticks += 1
    assert ticks >= 3
    assert sent_ids(app) == [slot_task_id("tick", START + k) for k in range(1, 2501)]


def test_list_shows_settings_entries_with_their_last_and_next_runs(app: Celery) -> None:
    app.conf.beat_schedule = {"nightly": {"task": "unit.n", "schedule": crontab(0, 3)}}
    clock = Clock(START)
    beat = Beat(app, clock=clock)
    manager = PeriodicTasks(app, store=beat.store)
    (before,) = manager.list()
    assert (before.source, before.last_run_at, before.next_run_at) == ("settings", None, None)
    beat.tick()
    clock.now_s = START + 86400
    beat.tick()
    (after,) = manager.list()
    assert after.schedule == "<crontab: 0 3 * * * (m/h/dM/MY/d)>"
    assert after.last_run_at == datetime(2026, 6, 2, 3, tzinfo=timezone.utc)
    assert after.next_run_at == datetime(2026, 6, 3, 3, tzinfo=timezone.utc)
