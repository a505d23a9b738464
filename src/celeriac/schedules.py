"""Periodic schedules with Celery's names: ``schedule``, ``crontab`` and ``solar``.

Each answers the two questions beat asks, as Celery's do: ``is_due(last_run_at)`` gives
``(is_due, next_check_s)`` and ``remaining_estimate(last_run_at)`` the time left. The
instant itself comes from ``next_run_after(after, tz)``: the first run strictly after *after*,
as an aware datetime in *tz* (the app's ``timezone`` by default).

Naive datetimes are taken as UTC, as Celery takes them. Crontab fields are matched on the
wall clock of the schedule's time zone, and ``day_of_week`` and ``day_of_month`` must both
match (Celery's rule, not cron's "either").
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import InvalidSchedule
from .utils import sun

if TYPE_CHECKING:
    from .app import Celeriac

__all__ = [
    "BaseSchedule",
    "ParseException",
    "crontab",
    "crontab_parser",
    "maybe_schedule",
    "schedstate",
    "schedule",
    "solar",
]

ParseException = InvalidSchedule
Cronspec: TypeAlias = "int | str | Iterable[int | str]"


class schedstate(NamedTuple):  # Celery's name
    is_due: bool
    next: float  # seconds until beat should ask again


def _zone(name: str | tzinfo | None) -> tzinfo:
    if name is None:
        return timezone.utc
    if isinstance(name, tzinfo):
        return name
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidSchedule(
            f"unknown time zone {name!r}; use an IANA name such as 'Europe/Paris' or 'UTC'"
        ) from exc


def _local_zone() -> tzinfo:
    """This machine's zone, with its daylight-saving rules: ``TZ`` or /etc/localtime."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass  # a POSIX rule string such as 'EST5EDT,M3.2.0,M11.1.0': read the file
    try:
        with open("/etc/localtime", "rb") as source:
            return ZoneInfo.from_file(source, key="localtime")
    except (OSError, ValueError):
        return datetime.now().astimezone().tzinfo or timezone.utc


class BaseSchedule:
    """What every schedule shares: the clock (``nowfun``), the app and its time zone."""

    def __init__(
        self, nowfun: Callable[[], datetime] | None = None, app: Celeriac | None = None
    ) -> None:
        self.nowfun = nowfun
        self._app = app

    @property
    def app(self) -> Celeriac:
        if self._app is None:
            from .utils.current import get_current_app

            return get_current_app()
        return self._app

    @app.setter
    def app(self, app: Celeriac) -> None:
        self._app = app

    @property
    def tz(self) -> tzinfo:
        """The app's ``timezone`` setting; when unset, UTC, or with ``enable_utc=False`` the
        machine's local zone (as Celery)."""
        conf = self.app.conf
        if conf.timezone is None and not conf.enable_utc:
            return _local_zone()
        return _zone(conf.timezone)

    @property
    def utc_enabled(self) -> bool:
        return bool(self.app.conf.enable_utc)

    def now(self) -> datetime:
        return self.nowfun() if self.nowfun is not None else datetime.now(self.tz)

    def maybe_make_aware(self, dt: datetime) -> datetime:
        """*dt* as an aware datetime: a naive one is read as UTC."""
        return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt

    def next_run_after(self, after: datetime, tz: str | tzinfo | None = None) -> datetime:
        raise NotImplementedError

    def remaining_estimate(self, last_run_at: datetime) -> timedelta:
        """Time from now until the first run after *last_run_at* (negative when overdue)."""
        due = self.next_run_after(last_run_at)
        return due.astimezone(timezone.utc) - self.maybe_make_aware(self.now()).astimezone(
            timezone.utc
        )

    def is_due(self, last_run_at: datetime) -> schedstate:
        """``(True, s)``: run now, ask again in *s* seconds; ``(False, s)``: ask in *s*."""
        remaining_s = max(self.remaining_estimate(last_run_at).total_seconds(), 0.0)
        if remaining_s == 0:
            next_s = max(self.remaining_estimate(self.now()).total_seconds(), 0.0)
            return schedstate(True, next_s)
        return schedstate(False, remaining_s)


class schedule(BaseSchedule):
    """Every *run_every* (seconds or a timedelta) after the last run.

    ``relative=True`` rounds each due time down to the interval's unit (day, hour, minute),
    so ``schedule(timedelta(hours=1), relative=True)`` runs on the hour.
    """

    def __init__(
        self,
        run_every: float | timedelta | None = None,
        relative: bool = False,
        nowfun: Callable[[], datetime] | None = None,
        app: Celeriac | None = None,
    ) -> None:
        self.run_every = _as_timedelta(run_every)
        self.relative = relative
        super().__init__(nowfun=nowfun, app=app)

    @property
    def seconds(self) -> float:
        return max(self.run_every.total_seconds(), 0.0)

    @property
    def human_seconds(self) -> str:
        return _humanize(self.seconds)

    def next_run_after(self, after: datetime, tz: str | tzinfo | None = None) -> datetime:
        zone = _zone(tz) if tz is not None else self.tz
        start = self.maybe_make_aware(after)
        due = (start.astimezone(timezone.utc) + self.run_every).astimezone(start.tzinfo)
        if self.relative:  # rounded on last_run_at's own clock (UTC when naive), as Celery does
            rounded = _round_down(due, self.run_every)
            due = rounded if rounded > start else due
        return due.astimezone(zone)

    def is_due(self, last_run_at: datetime) -> schedstate:
        remaining_s = max(self.remaining_estimate(last_run_at).total_seconds(), 0.0)
        if remaining_s == 0:
            next_s = self.seconds
            if self.relative:
                next_s = self.remaining_estimate(self.now()).total_seconds() or next_s
            return schedstate(True, max(next_s, 0.0))
        return schedstate(False, remaining_s)

    def __repr__(self) -> str:
        return f"<freq: {self.human_seconds}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, schedule):
            return self.run_every == other.run_every
        return self.run_every == other

    def __hash__(self) -> int:
        return hash(self.run_every)

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__class__, (self.run_every, self.relative)


def _as_timedelta(value: float | timedelta | None) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    raise InvalidSchedule(
        f"schedule run_every={value!r} is not an interval; "
        f"pass seconds (a number) or a datetime.timedelta"
    )


def _round_down(moment: datetime, interval: timedelta) -> datetime:
    if interval >= timedelta(days=1):
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if interval >= timedelta(hours=1):
        return moment.replace(minute=0, second=0, microsecond=0)
    if interval >= timedelta(minutes=1):
        return moment.replace(second=0, microsecond=0)
    return moment


def _humanize(seconds: float) -> str:
    """Celery's wording: '5.00 seconds', '1.00 minute', '2.50 hours'."""
    for unit_s, name in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if seconds >= unit_s:
            count = seconds / unit_s
            return f"{count:.2f} {name}{'' if count == 1 else 's'}"
    return "now"


def maybe_schedule(
    s: float | timedelta | BaseSchedule, relative: bool = False, app: Celeriac | None = None
) -> BaseSchedule:
    """A schedule from a number of seconds or a timedelta; a schedule is returned as is."""
    if isinstance(s, BaseSchedule):
        if app is not None:
            s.app = app
        return s
    return schedule(s, relative=relative, app=app)


# crontab
_DAY_NAMES = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]
_MONTH_NAMES = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _names(full_names: list[str], first: int) -> dict[str, int]:
    """Each name, full ('monday') or short ('mon'), with its number."""
    names = {name[:3]: first + i for i, name in enumerate(full_names)}
    names.update({name: first + i for i, name in enumerate(full_names)})
    return names


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: Mapping[str, int]
    unit: str

    def forms(self) -> str:
        named = f", a name ({'/'.join(list(self.names)[:3])}...)" if self.names else ""
        return (
            f"'*', a number {self.low}-{self.high}{named}, a range 'a-b', a step '*/n' or "
            f"'a-b/n', a comma-separated list of these, or a list/set of numbers"
        )


_MINUTE = _Field("minute", 0, 59, {}, "minute")
_HOUR = _Field("hour", 0, 23, {}, "hour")
_DAY_OF_WEEK = _Field("day_of_week", 0, 6, _names(_DAY_NAMES, 0), "day (0 is Sunday)")
_DAY_OF_MONTH = _Field("day_of_month", 1, 31, {}, "day")
_MONTH_OF_YEAR = _Field("month_of_year", 1, 12, _names(_MONTH_NAMES, 1), "month")
_PART = re.compile(r"(\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(\w*))?")


def _bad(field: _Field, spec: object, why: str) -> InvalidSchedule:
    return InvalidSchedule(
        f"crontab {field.name}={spec!r}: {why}; {field.name} accepts {field.forms()}"
    )


def _number(field: _Field, token: str, spec: object) -> int:
    if token.isdigit():
        value = int(token)
    elif token.lower() in field.names:
        value = field.names[token.lower()]
    else:
        raise _bad(field, spec, f"{token!r} is not a number or a {field.unit} name")
    if not field.low <= value <= field.high:
        raise _bad(field, spec, f"{value} is out of range {field.low}-{field.high}")
    return value


def _parse_part(field: _Field, part: str, spec: object) -> list[int]:
    match = _PART.fullmatch(part.strip())
    if match is None:
        raise _bad(field, spec, f"cannot read {part!r}")
    base, step_text = match.group(1), match.group(2)
    if base == "*":
        values = list(range(field.low, field.high + 1))
    elif "-" in base:
        first_text, last_text = base.split("-")
        first, last = _number(field, first_text, spec), _number(field, last_text, spec)
        if last < first:  # wraps past the end: 'fri-mon', '22-2'
            values = [*range(first, field.high + 1), *range(field.low, last + 1)]
        else:
            values = list(range(first, last + 1))
    else:
        if step_text is not None:
            raise _bad(field, spec, f"a step needs '*' or a range before it, not {base!r}")
        return [_number(field, base, spec)]
    if step_text is not None:
        if not step_text.isdigit() or int(step_text) == 0:
            raise _bad(field, spec, f"step {step_text!r} must be a whole number above 0")
        values = values[:: int(step_text)]
    return values


def _expand(field: _Field, spec: object) -> frozenset[int]:
    if isinstance(spec, bool):
        raise _bad(field, spec, "a boolean is not a time")
    if isinstance(spec, int):
        if not field.low <= spec <= field.high:
            raise _bad(field, spec, f"{spec} is out of range {field.low}-{field.high}")
        return frozenset({spec})
    if isinstance(spec, str):
        values: set[int] = set()
        for part in spec.split(","):
            if not part.strip():
                raise _bad(field, spec, "an empty part between commas")
            values.update(_parse_part(field, part, spec))
        return frozenset(values)
    if isinstance(spec, Iterable):
        items = list(spec)
        if not items:
            raise _bad(field, spec, "an empty list matches nothing")
        found: set[int] = set()
        for item in items:
            if not isinstance(item, (int, str)):
                raise _bad(field, spec, f"{item!r} is not a number or a pattern")
            found.update(_expand(field, item))
        return frozenset(found)
    raise _bad(field, spec, f"a {type(spec).__name__} is not a pattern")


class crontab_parser:  # Celery's name
    """Expand one cron field: ``crontab_parser(60).parse('*/15')`` -> {0, 15, 30, 45}."""

    def __init__(self, max_: int = 60, min_: int = 0) -> None:
        self.field = _Field("field", min_, min_ + max_ - 1, {}, "value")

    def parse(self, spec: str) -> set[int]:
        return set(_expand(self.field, spec))


class crontab(BaseSchedule):
    """Runs at the minutes that match every field, on the app's time zone's wall clock.

    ``crontab(minute=0, hour="*/3")``, ``crontab(minute="*/15", day_of_week="mon-fri")``,
    ``crontab(0, 9, day_of_month="1-7", day_of_week="mon")``.
    """

    def __init__(
        self,
        minute: Cronspec = "*",
        hour: Cronspec = "*",
        day_of_week: Cronspec = "*",
        day_of_month: Cronspec = "*",
        month_of_year: Cronspec = "*",
        nowfun: Callable[[], datetime] | None = None,
        app: Celeriac | None = None,
    ) -> None:
        self._orig = (minute, hour, day_of_week, day_of_month, month_of_year)
        self.minute = _expand(_MINUTE, minute)
        self.hour = _expand(_HOUR, hour)
        self.day_of_week = _expand(_DAY_OF_WEEK, day_of_week)
        self.day_of_month = _expand(_DAY_OF_MONTH, day_of_month)
        self.month_of_year = _expand(_MONTH_OF_YEAR, month_of_year)
        if not any(
            day <= _DAYS_IN_MONTH[month]
            for month in self.month_of_year
            for day in self.day_of_month
        ):
            raise InvalidSchedule(
                f"crontab day_of_month={day_of_month!r} month_of_year={month_of_year!r}: no "
                f"such date exists (e.g. the 30th of February); pick days that the months have"
            )
        super().__init__(nowfun=nowfun, app=app)

    @classmethod
    def from_string(cls, expression: str) -> crontab:
        """From a cron line's five fields: ``minute hour day_of_month month day_of_week``."""
        fields = expression.split()
        if len(fields) != 5:
            raise InvalidSchedule(
                f"crontab {expression!r} has {len(fields)} fields; write five: "
                f"minute hour day_of_month month_of_year day_of_week, like '*/15 9-17 * * 1-5'"
            )
        minute, hour, day_of_month, month_of_year, day_of_week = fields
        return cls(minute, hour, day_of_week, day_of_month, month_of_year)

    def next_run_after(self, after: datetime, tz: str | tzinfo | None = None) -> datetime:
        """The first matching minute strictly after *after*'s minute, in *tz*."""
        zone = _zone(tz) if tz is not None else self.tz
        local = self.maybe_make_aware(after).astimezone(zone)
        moment = local.replace(second=0, microsecond=0, tzinfo=None) + timedelta(minutes=1)
        limit_year = moment.year + 100
        while moment.year <= limit_year:
            found, moment = self._step(moment)
            if found:
                return moment.replace(tzinfo=zone)
        raise InvalidSchedule(f"{self!r} matches no date within a century; check its fields")

    def _step(self, moment: datetime) -> tuple[bool, datetime]:
        """(True, moment) when *moment* matches; else (False, the next candidate)."""
        if moment.month not in self.month_of_year:
            later = [m for m in self.month_of_year if m > moment.month]
            year = moment.year if later else moment.year + 1
            month = min(later) if later else min(self.month_of_year)
            return False, datetime(year, month, 1)
        if moment.day not in self.day_of_month or moment.isoweekday() % 7 not in self.day_of_week:
            next_day = moment.date() + timedelta(days=1)
            return False, datetime(next_day.year, next_day.month, next_day.day)
        if moment.hour not in self.hour:
            later = [h for h in self.hour if h > moment.hour]
            if later:
                return False, moment.replace(hour=min(later), minute=0)
            next_day = moment.date() + timedelta(days=1)
            return False, datetime(next_day.year, next_day.month, next_day.day)
        if moment.minute not in self.minute:
            later = [m for m in self.minute if m > moment.minute]
            if later:
                return False, moment.replace(minute=min(later))
            return False, moment.replace(minute=0) + timedelta(hours=1)
        return True, moment

    def __repr__(self) -> str:
        minute, hour, day_of_week, day_of_month, month_of_year = (_spec_text(v) for v in self._orig)
        return (
            f"<crontab: {minute} {hour} {day_of_month} {month_of_year} {day_of_week} (m/h/dM/MY/d)>"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, crontab):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[frozenset[int], ...]:
        return (self.minute, self.hour, self.day_of_week, self.day_of_month, self.month_of_year)

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__class__, self._orig


def _spec_text(spec: object) -> str:
    if isinstance(spec, (str, int)):
        return str(spec)
    return ",".join(str(v) for v in sorted(spec))  # type: ignore[call-overload]


# solar
@dataclass(frozen=True)
class _SunEvent:
    altitude_deg: float | None  # of the sun's centre; None: the transit (solar noon)
    rising: bool


# sunrise/sunset: the upper limb on the horizon, seen through standard refraction (34')
_LIMB_DEG = -(34 + 16) / 60
_SUN_EVENTS = {
    "dawn_astronomical": _SunEvent(-18.0, True),
    "dawn_nautical": _SunEvent(-12.0, True),
    "dawn_civil": _SunEvent(-6.0, True),
    "sunrise": _SunEvent(_LIMB_DEG, True),
    "solar_noon": _SunEvent(None, True),
    "sunset": _SunEvent(_LIMB_DEG, False),
    "dusk_civil": _SunEvent(-6.0, False),
    "dusk_nautical": _SunEvent(-12.0, False),
    "dusk_astronomical": _SunEvent(-18.0, False),
}


class solar(BaseSchedule):
    """Runs at a sun event at a place: ``solar("sunset", 59.91, 10.75)`` (Oslo).

    Events: dawn_astronomical, dawn_nautical, dawn_civil, sunrise, solar_noon, sunset,
    dusk_civil, dusk_nautical, dusk_astronomical. Where an event does not happen for a
    while (polar day or night), the next one is searched up to a year ahead.
    """

    def __init__(
        self,
        event: str,
        lat: float,
        lon: float,
        nowfun: Callable[[], datetime] | None = None,
        app: Celeriac | None = None,
    ) -> None:
        if event not in _SUN_EVENTS:
            raise InvalidSchedule(
                f"solar event {event!r} is not known; use one of {', '.join(sorted(_SUN_EVENTS))}"
            )
        if not -90 <= lat <= 90:
            raise InvalidSchedule(f"solar latitude {lat} is out of range; use -90 to 90 degrees")
        if not -180 <= lon <= 180:
            raise InvalidSchedule(f"solar longitude {lon} is out of range; use -180 to 180 degrees")
        self.event = event
        self.lat = lat
        self.lon = lon
        super().__init__(nowfun=nowfun, app=app)

    def next_run_after(self, after: datetime, tz: str | tzinfo | None = None) -> datetime:
        zone = _zone(tz) if tz is not None else self.tz
        start = self.maybe_make_aware(after)
        spec = _SUN_EVENTS[self.event]
        found = sun.event_after(start, self.lat, self.lon, spec.altitude_deg, spec.rising)
        if found is None:  # not within a year: ask again tomorrow
            found = start + timedelta(days=1)
        return found.astimezone(zone)

    def __repr__(self) -> str:
        return f"<solar: {self.event} at latitude {self.lat}, longitude: {self.lon}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, solar):
            return NotImplemented
        return (self.event, self.lat, self.lon) == (other.event, other.lat, other.lon)

    def __hash__(self) -> int:
        return hash((self.event, self.lat, self.lon))

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__class__, (self.event, self.lat, self.lon)
