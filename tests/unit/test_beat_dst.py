"""Daylight saving with a controlled clock: a crontab whose local time is skipped (clocks go
forward) or repeated (clocks go back) runs exactly once on that day, in London and New York.

The rule: a skipped time runs at the old offset (one hour later by the new clock); a
repeated time runs at its first occurrence only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from celeriac import Celery
from celeriac.beat import Beat, slot_task_id
from celeriac.schedules import crontab
from tests.unit.helpers import take_envelopes

UTC = timezone.utc


class Clock:
    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def _minutes(start: datetime, end: datetime) -> Iterator[datetime]:
    moment = start
    while moment <= end:
        yield moment
        moment += timedelta(minutes=1)


def run_beat(
    app: Celery, schedule: crontab, start: datetime, end: datetime, step_s: float | None
) -> list[datetime]:
    """Run a beat from *start* to *end*: waking when it asks to (a little late) when
    *step_s* is None, else every *step_s* seconds; returns the slots it sent, as UTC times."""
    app.conf.beat_schedule = {"dst": {"task": "unit.dst", "schedule": schedule}}
    clock = Clock(start.timestamp())
    beat = Beat(app, clock=clock, max_interval_s=6 * 3600)
    while clock.now_s < end.timestamp():
        wait_s = beat.tick()
        clock.now_s += step_s if step_s is not None else max(wait_s, 0.0) + 0.25
    by_id = {slot_task_id("dst", m.timestamp()): m for m in _minutes(start, end)}
    sent = [by_id[e["headers"]["id"]] for e in take_envelopes(app)]
    assert len(sent) == len(set(sent)), "a slot was sent twice"
    return sent


CASES = [
    # zone, the change day, hour:minute that is skipped or repeated that day, UTC run expected
    ("Europe/London", date(2026, 3, 29), (1, 30), datetime(2026, 3, 29, 1, 30, tzinfo=UTC)),
    ("Europe/London", date(2026, 10, 25), (1, 30), datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
    ("America/New_York", date(2026, 3, 8), (2, 30), datetime(2026, 3, 8, 7, 30, tzinfo=UTC)),
    ("America/New_York", date(2026, 11, 1), (1, 30), datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),
]


@pytest.mark.parametrize("step_s", [None, 97.0])
@pytest.mark.parametrize(("zone", "day", "at", "expected"), CASES)
def test_daily_crontab_runs_exactly_once_on_a_dst_change_day(
    app: Celery,
    zone: str,
    day: date,
    at: tuple[int, int],
    expected: datetime,
    step_s: float | None,
) -> None:
    app.conf.timezone = zone
    start = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(days=1)
    sent = run_beat(
        app, crontab(minute=at[1], hour=at[0]), start, start + timedelta(days=3), step_s
    )
    local_days = Counter(moment.astimezone(ZoneInfo(zone)).date() for moment in sent)
    assert local_days == {day - timedelta(days=1): 1, day: 1, day + timedelta(days=1): 1}
    assert expected in sent
    if day.month > 6:  # clocks went back: the first of the two identical wall times
        assert expected.astimezone(ZoneInfo(zone)).fold == 0


@pytest.mark.parametrize(("zone", "day", "at", "expected"), CASES)
def test_hourly_crontab_runs_once_per_wall_clock_time_through_a_change(
    app: Celery, zone: str, day: date, at: tuple[int, int], expected: datetime
) -> None:
    app.conf.timezone = zone
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    sent = run_beat(app, crontab(minute=at[1]), start, start + timedelta(days=1), None)
    walls = Counter(m.astimezone(ZoneInfo(zone)).replace(tzinfo=None) for m in sent)
    assert set(walls.values()) == {1}  # no wall-clock time ran twice
    assert expected in sent
    gaps = {b - a for a, b in pairwise(sent)}
    assert gaps <= {timedelta(hours=1), timedelta(hours=2)}  # only the repeated hour is skipped


def test_beat_started_inside_the_repeated_hour_does_not_rerun_its_first_pass(app: Celery) -> None:
    app.conf.timezone = "America/New_York"
    # 01:10 EST, the second pass of 01:00-02:00 on 2026-11-01 (01:30 EDT already ran)
    start = datetime(2026, 11, 1, 6, 10, tzinfo=UTC)
    end = start + timedelta(days=1, hours=1)
    sent = run_beat(app, crontab(minute=30, hour=1), start, end, None)
    assert sent == [datetime(2026, 11, 2, 6, 30, tzinfo=UTC)]  # 01:30 EST the next day


@pytest.mark.parametrize(("enable_utc", "expected_hour_utc"), [(True, 9), (False, 13)])
def test_without_timezone_crontabs_read_utc_or_with_enable_utc_off_the_local_zone(
    app: Celery, monkeypatch: pytest.MonkeyPatch, enable_utc: bool, expected_hour_utc: int
) -> None:
    monkeypatch.setenv("TZ", "America/New_York")  # this machine's zone, for the test
    app.conf.enable_utc = enable_utc
    start = datetime(2026, 6, 1, tzinfo=UTC)
    sent = run_beat(app, crontab(minute=0, hour=9), start, start + timedelta(days=1), None)
    assert sent == [datetime(2026, 6, 1, expected_hour_utc, tzinfo=UTC)]
