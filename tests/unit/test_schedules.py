"""celeriac.schedules: crontab's next due times match Celery's crontab, solar's match
Celery's solar (ephem) within a minute, and bad fields are named in the error."""

from __future__ import annotations

import pickle
import random
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import celery
import pytest
from celery.schedules import crontab as celery_crontab
from celery.schedules import solar as celery_solar
from hypothesis import given, settings
from hypothesis import strategies as st

from celeriac import Celery
from celeriac.errors import CeleriacError, InvalidSchedule
from celeriac.schedules import crontab, crontab_parser, maybe_schedule, schedule, solar

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]
EXPRESSIONS: list[dict[str, object]] = [
    {},
    {"minute": 0},
    {"minute": "*/15"},
    {"minute": 0, "hour": "*/3"},
    {"minute": "30", "hour": "9-17", "day_of_week": "mon-fri"},
    {"minute": 0, "hour": 0, "day_of_month": "1"},
    {"minute": 0, "hour": 12, "day_of_month": "29", "month_of_year": "2"},
    {"minute": "5,35", "hour": "22-2"},
    {"minute": 0, "hour": 7, "day_of_week": "fri-mon"},
    {"minute": "1-59/7", "hour": "*/5", "day_of_month": "1-15/2"},
    {"minute": 0, "hour": 9, "day_of_week": "mon", "day_of_month": "1-7"},
    {"minute": 59, "hour": 23, "day_of_month": 31},
    {"minute": 0, "hour": 3, "month_of_year": "*/3", "day_of_month": 15},
    {"minute": [0, 30], "hour": {6, 18}},
    {"minute": 0, "hour": 0, "day_of_week": "sunday", "month_of_year": "jan,jul"},
    {"minute": 30, "hour": 2},
    {"minute": "*/10", "hour": "1-3"},
]


@pytest.fixture
def our_app() -> Iterator[Celery]:
    app = Celery("schedules", broker="memory://schedules", set_as_current=False)
    yield app
    app.close()


def celery_next(expression: dict[str, object], zone: str, last: datetime) -> datetime:
    capp = celery.Celery(set_as_current=False)
    capp.conf.timezone = zone
    start, delta, _now = celery_crontab(app=capp, **expression).remaining_delta(last)  # type: ignore[arg-type]
    result: datetime = start + delta
    return result


@pytest.mark.parametrize("zone", ZONES)
def test_crontab_next_due_matches_celery_over_three_years(our_app: Celery, zone: str) -> None:
    our_app.conf.timezone = zone
    rng = random.Random(zone)
    base = datetime(2024, 1, 1, tzinfo=timezone.utc)
    for expression in EXPRESSIONS:
        ours = crontab(app=our_app, **expression)  # type: ignore[arg-type]
        capp = celery.Celery(set_as_current=False)
        capp.conf.timezone = zone
        theirs = celery_crontab(app=capp, **expression)  # type: ignore[arg-type]
        for _ in range(25):
            last = base + timedelta(seconds=rng.randrange(3 * 365 * 86400))
            start, delta, _now = theirs.remaining_delta(last)
            expected = start + delta
            got = ours.next_run_after(last)
            assert got == expected, (expression, zone, last)
            assert got.replace(tzinfo=None) == expected.replace(tzinfo=None)


@pytest.mark.parametrize(
    ("zone", "transition"),
    [
        ("Europe/Paris", datetime(2025, 3, 30, 1, tzinfo=timezone.utc)),
        ("Europe/Paris", datetime(2025, 10, 26, 1, tzinfo=timezone.utc)),
        ("America/New_York", datetime(2025, 3, 9, 7, tzinfo=timezone.utc)),
        ("America/New_York", datetime(2025, 11, 2, 6, tzinfo=timezone.utc)),
    ],
)
def test_crontab_next_due_matches_celery_across_dst_changes(
    our_app: Celery, zone: str, transition: datetime
) -> None:
    our_app.conf.timezone = zone
    for expression in [{}, {"minute": 30, "hour": 2}, {"minute": "*/10", "hour": "1-3"}]:
        ours = crontab(app=our_app, **expression)  # type: ignore[arg-type]
        for minutes in range(-180, 180, 11):
            last = transition + timedelta(minutes=minutes, seconds=13)
            expected = celery_next(expression, zone, last)
            assert ours.next_run_after(last) == expected, (expression, last)


def _part(low: int, high: int) -> st.SearchStrategy[str]:
    number = st.integers(low, high)
    return st.one_of(
        st.just("*"),
        number.map(str),
        st.tuples(number, number).map(lambda p: f"{p[0]}-{p[1]}"),
        st.integers(1, high - low + 1).map(lambda s: f"*/{s}"),
        st.tuples(number, number, st.integers(1, 9)).map(lambda p: f"{p[0]}-{p[1]}/{p[2]}"),
    )


def _field(low: int, high: int) -> st.SearchStrategy[str]:
    return st.lists(_part(low, high), min_size=1, max_size=3).map(",".join)


@settings(max_examples=150, deadline=None)
@given(
    minute=_field(0, 59),
    hour=_field(0, 23),
    day_of_week=_field(0, 6),
    day_of_month=st.one_of(st.just("*"), _field(1, 28)),
    month_of_year=st.one_of(st.just("*"), _field(1, 12)),
    seconds=st.integers(0, 4 * 365 * 86400),
)
def test_any_crontab_expression_is_due_when_celerys_is(
    minute: str, hour: str, day_of_week: str, day_of_month: str, month_of_year: str, seconds: int
) -> None:
    expression: dict[str, object] = {
        "minute": minute,
        "hour": hour,
        "day_of_week": day_of_week,
        "day_of_month": day_of_month,
        "month_of_year": month_of_year,
    }
    app = Celery("prop", broker="memory://prop", set_as_current=False)
    app.conf.timezone = "Europe/Paris"
    last = datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=seconds)
    ours = crontab(app=app, **expression)  # type: ignore[arg-type]
    capp = celery.Celery(set_as_current=False)
    capp.conf.timezone = "Europe/Paris"
    theirs = celery_crontab(app=capp, **expression)  # type: ignore[arg-type]
    assert ours.minute == theirs.minute
    assert ours.hour == theirs.hour
    assert ours.day_of_week == theirs.day_of_week
    start, delta, _now = theirs.remaining_delta(last)
    assert ours.next_run_after(last) == start + delta


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("*/15", {0, 15, 30, 45}),
        ("1-5", {1, 2, 3, 4, 5}),
        ("1,13,30-45/5,50", {1, 13, 30, 35, 40, 45, 50}),
        ("55-5/5", {55, 0, 5}),
    ],
)
def test_crontab_minute_string_syntax_expands_like_cron(spec: str, expected: set[int]) -> None:
    assert crontab(minute=spec).minute == expected


def test_crontab_day_names_and_wrapping_ranges() -> None:
    assert crontab(day_of_week="mon-fri").day_of_week == {1, 2, 3, 4, 5}
    assert crontab(day_of_week="fri-mon").day_of_week == {5, 6, 0, 1}
    assert crontab(day_of_week="Sunday,sat").day_of_week == {0, 6}
    assert crontab(month_of_year="jan-mar").month_of_year == {1, 2, 3}


def test_crontab_parser_expands_a_field_like_celerys() -> None:
    assert crontab_parser(24).parse("*/4") == {0, 4, 8, 12, 16, 20}
    assert crontab_parser(31, 1).parse("*/10") == {1, 11, 21, 31}


def test_crontab_from_string_reads_the_five_cron_fields() -> None:
    parsed = crontab.from_string("*/15 9-17 1 jan mon-fri")
    assert parsed == crontab("*/15", "9-17", "mon-fri", "1", "jan")


@pytest.mark.parametrize(
    ("kwargs", "field", "why"),
    [
        ({"minute": "61"}, "minute", "61 is out of range 0-59"),
        ({"minute": 61}, "minute", "61 is out of range 0-59"),
        ({"hour": "abc"}, "hour", "'abc' is not a number"),
        ({"minute": "*/0"}, "minute", "step '0' must be a whole number above 0"),
        ({"minute": "5/15"}, "minute", "a step needs '*' or a range"),
        ({"day_of_week": "7"}, "day_of_week", "7 is out of range 0-6"),
        ({"day_of_week": "funday"}, "day_of_week", "'funday' is not a number or a day"),
        ({"hour": "1,,2"}, "hour", "an empty part between commas"),
        ({"minute": 1.5}, "minute", "a float is not a pattern"),
    ],
)
def test_bad_crontab_field_is_named_with_the_accepted_forms(
    kwargs: dict[str, object], field: str, why: str
) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        crontab(**kwargs)  # type: ignore[arg-type]
    message = str(caught.value)
    assert f"crontab {field}=" in message
    assert why in message
    assert f"{field} accepts '*'" in message
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, CeleriacError)


def test_crontab_with_no_possible_date_is_refused() -> None:
    with pytest.raises(InvalidSchedule, match="no such date exists"):
        crontab(day_of_month=30, month_of_year=2)


def test_crontab_from_string_with_wrong_field_count_says_what_to_write() -> None:
    with pytest.raises(InvalidSchedule, match="has 3 fields; write five"):
        crontab.from_string("* * *")


def test_crontab_is_due_at_its_minute_and_says_when_to_check_next(our_app: Celery) -> None:
    now = datetime(2025, 6, 2, 10, 0, 5, tzinfo=timezone.utc)
    hourly = crontab(minute=0, nowfun=lambda: now, app=our_app)
    due, next_s = hourly.is_due(datetime(2025, 6, 2, 9, 0, tzinfo=timezone.utc))
    assert due is True
    assert next_s == pytest.approx(3595)
    due, next_s = hourly.is_due(datetime(2025, 6, 2, 10, 0, 1, tzinfo=timezone.utc))
    assert due is False
    assert next_s == pytest.approx(3595)


def test_crontab_is_due_agrees_with_celerys(our_app: Celery) -> None:
    capp = celery.Celery(set_as_current=False)
    now = datetime(2025, 6, 2, 10, 7, 30, tzinfo=timezone.utc)
    for expression in EXPRESSIONS[:6]:
        ours = crontab(nowfun=lambda: now, app=our_app, **expression)  # type: ignore[arg-type]
        theirs = celery_crontab(nowfun=lambda: now, app=capp, **expression)  # type: ignore[arg-type]
        for back_s in (30, 600, 7200, 90000):
            last = now - timedelta(seconds=back_s)
            assert tuple(ours.is_due(last)) == pytest.approx(tuple(theirs.is_due(last)))


def test_naive_last_run_is_read_as_utc(our_app: Celery) -> None:
    our_app.conf.timezone = "Asia/Kolkata"
    daily = crontab(minute=0, hour=6, app=our_app)
    naive = datetime(2025, 1, 1, 0, 0)  # 05:30 in Kolkata
    assert daily.next_run_after(naive) == daily.next_run_after(naive.replace(tzinfo=timezone.utc))
    assert daily.next_run_after(naive).isoformat() == "2025-01-01T06:00:00+05:30"


def test_next_run_after_takes_an_explicit_time_zone(our_app: Celery) -> None:
    at_nine = crontab(minute=0, hour=9, app=our_app)
    after = datetime(2025, 1, 1, 12, tzinfo=timezone.utc)
    assert at_nine.next_run_after(after, "America/New_York").isoformat() == (
        "2025-01-01T09:00:00-05:00"  # 12:00 UTC is 07:00 there
    )


def test_schedule_is_due_after_its_interval(our_app: Celery) -> None:
    now = datetime(2025, 6, 2, 10, 0, tzinfo=timezone.utc)
    every_30s = schedule(30, nowfun=lambda: now, app=our_app)
    assert tuple(every_30s.is_due(now - timedelta(seconds=31))) == (True, 30)
    due, next_s = every_30s.is_due(now - timedelta(seconds=10))
    assert (due, next_s) == (False, pytest.approx(20))
    assert every_30s.remaining_estimate(now) == timedelta(seconds=30)


def test_schedule_matches_celerys_schedule(our_app: Celery) -> None:
    now = datetime(2025, 6, 2, 10, 0, 20, tzinfo=timezone.utc)
    capp = celery.Celery(set_as_current=False)
    for every in (5, 60.5, timedelta(minutes=5), timedelta(hours=2)):
        ours = schedule(every, nowfun=lambda: now, app=our_app)
        theirs = celery.schedules.schedule(every, nowfun=lambda: now, app=capp)
        for back_s in (1, 59, 300, 4000, 9000):
            last = now - timedelta(seconds=back_s)
            assert tuple(ours.is_due(last)) == pytest.approx(tuple(theirs.is_due(last)))
        assert repr(ours) == repr(theirs)


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", "Asia/Kolkata"])
@pytest.mark.parametrize("relative", [False, True])
def test_schedule_remaining_and_is_due_match_celerys(
    our_app: Celery, zone: str, relative: bool
) -> None:
    our_app.conf.timezone = zone
    capp = celery.Celery(set_as_current=False)
    capp.conf.timezone = zone
    rng = random.Random(f"{zone}{relative}")
    intervals = [45, timedelta(minutes=5), timedelta(minutes=90), timedelta(hours=3)]
    for every in [*intervals, timedelta(days=1), timedelta(days=2)]:
        for _ in range(20):
            now = datetime(2025, 1, 1, tzinfo=timezone.utc) + timedelta(
                seconds=rng.randrange(365 * 86400)
            )
            last = now - timedelta(seconds=rng.randrange(3 * 86400))
            ours = schedule(every, relative=relative, nowfun=lambda n=now: n, app=our_app)
            theirs = celery.schedules.schedule(
                every, relative=relative, nowfun=lambda n=now: n, app=capp
            )
            assert ours.remaining_estimate(last) == theirs.remaining_estimate(last)
            assert tuple(ours.is_due(last)) == tuple(theirs.is_due(last))


def test_relative_schedule_runs_on_the_unit_boundary(our_app: Celery) -> None:
    hourly = schedule(timedelta(hours=1), relative=True, app=our_app)
    last = datetime(2025, 6, 2, 10, 17, 45, tzinfo=timezone.utc)
    assert hourly.next_run_after(last) == datetime(2025, 6, 2, 11, tzinfo=timezone.utc)


def test_schedule_with_a_non_interval_is_refused() -> None:
    with pytest.raises(InvalidSchedule, match="pass seconds"):
        schedule("ten")  # type: ignore[arg-type]


def test_maybe_schedule_wraps_numbers_and_keeps_schedules() -> None:
    assert maybe_schedule(10) == schedule(10)
    hourly = crontab(minute=0)
    assert maybe_schedule(hourly) is hourly


def test_schedules_survive_pickling_as_beat_stores_them() -> None:
    for original in (crontab("*/5", "9-17", "mon-fri"), schedule(30), solar("sunset", 10, 20)):
        assert pickle.loads(pickle.dumps(original)) == original


PLACES = [
    (48.8566, 2.3522),  # Paris
    (40.7128, -74.006),  # New York
    (-33.8688, 151.2093),  # Sydney
    (64.1466, -21.9426),  # Reykjavik
    (1.29, 103.85),  # Singapore
]
EVENTS = ["dawn_astronomical", "dawn_civil", "sunrise", "solar_noon", "sunset", "dusk_nautical"]


@pytest.mark.parametrize(("lat", "lon"), PLACES)
def test_solar_events_match_celerys_ephem_within_a_minute(
    our_app: Celery, lat: float, lon: float
) -> None:
    capp = celery.Celery(set_as_current=False)
    for start in (
        datetime(2026, 1, 15, 3, tzinfo=timezone.utc),
        datetime(2026, 6, 21, 17, tzinfo=timezone.utc),
        datetime(2026, 9, 30, 11, tzinfo=timezone.utc),
    ):
        for event in EVENTS:
            ours = solar(event, lat, lon, nowfun=lambda s=start: s, app=our_app)
            theirs = celery_solar(event, lat, lon, nowfun=lambda s=start: s, app=capp)
            expected = start + theirs.remaining_estimate(start)
            if expected - start > timedelta(days=2):
                continue  # a white night: the test below covers the search past it
            got = ours.next_run_after(start)
            assert abs((got - expected).total_seconds()) < 60, (event, lat, lon, start)


def test_solar_finds_the_first_sunrise_after_the_polar_night(our_app: Celery) -> None:
    tromso = solar("sunrise", 69.65, 18.96, app=our_app)
    after = datetime(2025, 12, 1, tzinfo=timezone.utc)
    first = tromso.next_run_after(after)
    capp = celery.Celery(set_as_current=False)
    theirs = celery_solar("sunrise", 69.65, 18.96, nowfun=lambda: after, app=capp)
    expected = after + theirs.remaining_estimate(after)
    assert first.date().isoformat().startswith("2026-01")
    assert abs((first - expected).total_seconds()) < 300


def test_solar_finds_the_first_nautical_dusk_after_the_white_nights(our_app: Celery) -> None:
    # the sun first dips to -12 degrees again in mid-August, barely: the two computations
    # may put that first grazing dusk on neighbouring nights
    reykjavik = solar("dusk_nautical", 64.1466, -21.9426, app=our_app)
    after = datetime(2026, 6, 21, 17, tzinfo=timezone.utc)
    capp = celery.Celery(set_as_current=False)
    theirs = celery_solar("dusk_nautical", 64.1466, -21.9426, nowfun=lambda: after, app=capp)
    expected = after + theirs.remaining_estimate(after)
    assert abs(reykjavik.next_run_after(after) - expected) < timedelta(days=1, hours=1)


def test_solar_is_due_once_the_event_passed(our_app: Celery) -> None:
    now = datetime(2025, 6, 21, 12, tzinfo=timezone.utc)
    sunrise = solar("sunrise", 48.8566, 2.3522, nowfun=lambda: now, app=our_app)
    due, next_s = sunrise.is_due(now - timedelta(hours=12))
    assert due is True
    assert 14 * 3600 < next_s < 18 * 3600  # tomorrow's sunrise, ~04:47 UTC


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (("moonrise", 0, 0), "solar event 'moonrise' is not known; use one of dawn_"),
        (("sunset", 91, 0), "latitude 91 is out of range"),
        (("sunset", 0, -181), "longitude -181 is out of range"),
    ],
)
def test_bad_solar_arguments_are_refused(args: tuple[str, float, float], why: str) -> None:
    with pytest.raises(InvalidSchedule, match=why):
        solar(*args)
