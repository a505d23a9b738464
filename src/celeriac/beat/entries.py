"""Periodic task entries: Celery's ``beat_schedule`` items, checked, and their JSON form.

An entry in ``beat_schedule`` is Celery's dict::

    {"task": "proj.tasks.cleanup", "schedule": crontab(minute=0), "args": (1,),
     "kwargs": {}, "options": {"queue": "low"}, "relative": False}

``schedule`` is seconds, a ``timedelta``, a ``crontab`` or a ``solar``. Entries added at run
time are kept in the broker as JSON (``to_json`` / ``from_json``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..errors import InvalidSchedule
from ..schedules import BaseSchedule, crontab, maybe_schedule, schedule, solar

if TYPE_CHECKING:
    from ..app import Celeriac

ENTRY_KEYS = ("task", "schedule", "args", "kwargs", "options", "relative")


@dataclass
class Entry:
    """One periodic task: what to send, with what arguments, on which schedule."""

    name: str
    task: str
    schedule: BaseSchedule
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    source: str = "settings"  # "settings" (beat_schedule) or "runtime" (kept in the broker)
    is_paused: bool = False


def entry_from_settings(app: Celeriac, name: object, spec: object) -> Entry:
    """An Entry from one ``beat_schedule`` item, or InvalidSchedule saying what is wrong."""
    if not isinstance(name, str) or not name:
        raise InvalidSchedule(f"beat_schedule key {name!r} is not a name; use a non-empty string")
    where = f"beat_schedule[{name!r}]"
    if not isinstance(spec, Mapping):
        raise InvalidSchedule(
            f"{where} is a {type(spec).__name__}; write a dict like "
            f"{{'task': 'proj.tasks.add', 'schedule': 30.0}}"
        )
    unknown = sorted(str(key) for key in spec if key not in ENTRY_KEYS)
    if unknown:
        raise InvalidSchedule(
            f"{where} has unknown key(s) {', '.join(unknown)}; the keys are {', '.join(ENTRY_KEYS)}"
        )
    task = spec.get("task")
    if not isinstance(task, str) or not task:
        raise InvalidSchedule(f"{where} needs 'task': the registered name of the task to send")
    if "schedule" not in spec:
        raise InvalidSchedule(
            f"{where} needs 'schedule': seconds, a timedelta, a crontab(...) or a solar(...)"
        )
    return Entry(
        name=name,
        task=task,
        schedule=_schedule(app, where, spec["schedule"], bool(spec.get("relative", False))),
        args=_args(where, spec.get("args")),
        kwargs=_mapping(where, "kwargs", spec.get("kwargs")),
        options=_options(where, spec.get("options")),
    )


def _options(where: str, value: object) -> dict[str, Any]:
    from ..app.send_checks import SEND_OPTIONS

    options = _mapping(where, "options", value)
    if "task_id" in options:
        raise InvalidSchedule(
            f"{where}['options'] has task_id; remove it: each run's task id comes from the "
            f"entry's name and the run's time, so that no two beats send one run twice"
        )
    unknown = sorted(set(options) - SEND_OPTIONS)
    if unknown:
        allowed = ", ".join(sorted(SEND_OPTIONS - {"task", "task_id"}))
        raise InvalidSchedule(
            f"{where}['options'] has unknown option(s) {', '.join(unknown)}; "
            f"apply_async takes {allowed}"
        )
    return options


def _schedule(app: Celeriac, where: str, value: object, relative: bool) -> BaseSchedule:
    if isinstance(value, bool) or not isinstance(value, (int, float, timedelta, BaseSchedule)):
        raise InvalidSchedule(
            f"{where}['schedule'] is {value!r}; use seconds (a number), a timedelta, "
            f"crontab(...) or solar(...) from celeriac.schedules"
        )
    result = maybe_schedule(value, relative=relative, app=app)
    if isinstance(result, schedule) and result.run_every.total_seconds() <= 0:
        raise InvalidSchedule(f"{where}['schedule'] is {value!r}; an interval must be above 0")
    return result


def _args(where: str, value: object) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(value)
    raise InvalidSchedule(f"{where}['args'] is a {type(value).__name__}; use a list or tuple")


def _mapping(where: str, key: str, value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return dict(value)
    raise InvalidSchedule(f"{where}[{key!r}] is {value!r}; use a dict with string keys")


# the JSON form kept in the broker
def schedule_to_json(value: BaseSchedule) -> dict[str, Any]:
    if isinstance(value, schedule):
        return {"every": value.run_every.total_seconds(), "relative": value.relative}
    if isinstance(value, crontab):
        names = ("minute", "hour", "day_of_week", "day_of_month", "month_of_year")
        return {"crontab": {n: _json_spec(v) for n, v in zip(names, value._orig, strict=True)}}
    if isinstance(value, solar):
        return {"solar": {"event": value.event, "lat": value.lat, "lon": value.lon}}
    raise InvalidSchedule(
        f"{value!r} cannot be kept in the broker; use seconds, a timedelta, crontab or solar"
    )


def _json_spec(spec: object) -> object:
    if isinstance(spec, (str, int)):
        return spec
    return sorted(spec)  # type: ignore[call-overload]


def to_json(entry: Entry) -> dict[str, Any]:
    return {
        "task": entry.task,
        "schedule": schedule_to_json(entry.schedule),
        "args": list(entry.args),
        "kwargs": entry.kwargs,
        "options": entry.options,
    }


def from_json(app: Celeriac, name: str, data: Mapping[str, Any]) -> Entry:
    spec = dict(data)
    spec["schedule"] = schedule_from_json(spec.get("schedule"))
    entry = entry_from_settings(app, name, spec)
    entry.source = "runtime"
    return entry


def schedule_from_json(data: object) -> BaseSchedule:
    if isinstance(data, Mapping):
        if "every" in data:
            return schedule(float(data["every"]), relative=bool(data.get("relative", False)))
        if isinstance(data.get("crontab"), Mapping):
            return crontab(**data["crontab"])
        if isinstance(data.get("solar"), Mapping):
            sun = data["solar"]
            return solar(str(sun["event"]), float(sun["lat"]), float(sun["lon"]))
    raise InvalidSchedule(
        f"stored schedule {data!r} is not one celeriac wrote; remove the entry and add it again"
    )
