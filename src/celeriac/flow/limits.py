"""What a task declares about its flow, read once and checked at decoration or config load.

``rate_limit`` takes Celery's forms: ``"10/s"``, ``"100/m"``, ``"1000/h"`` or a number (per
second). A key (``rate_limit_key``, ``unique_key``) is a callable of the task's args and
kwargs, or a template such as ``"{tenant}"`` over its kwargs.
"""

from __future__ import annotations

import contextlib
import inspect
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ImproperlyConfigured

if TYPE_CHECKING:
    from ..config import Settings
    from ..task import Task

ACCEPTED_FORMS = '"10/s", "100/m", "1000/h", or a number of tasks per second such as 10'
SCOPES = ("worker", "global")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0}

KeyFunction = Callable[[Sequence[Any], Mapping[str, Any]], str]


def parse_rate(value: object, task_name: str = "") -> float | None:
    """Tasks per second for *value*; None (or 0) means no limit. Raises with the forms."""
    if value is None or value == "" or value == 0:
        return None
    per_s: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        per_s = float(value)
    elif isinstance(value, str):
        count, _, unit = value.strip().partition("/")
        try:
            number = float(count)
        except ValueError:
            number = -1.0
        if unit.strip() in _UNIT_S or not unit:
            per_s = number / _UNIT_S[unit.strip() or "s"]
    if per_s is None or per_s < 0 or per_s != per_s or per_s == float("inf"):
        where = f" of task {task_name!r}" if task_name else ""
        raise ImproperlyConfigured(
            f"rate_limit{where} is {value!r}, which is not a rate; use {ACCEPTED_FORMS}"
        )
    return per_s or None


def template_fields(template: str) -> list[str]:
    """The kwarg names a key template reads; raises when it is not a plain template."""
    names = []
    for _, field, spec, conversion in string.Formatter().parse(template):
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise ValueError(f"{{{field}}} is not a plain kwarg name")
        names.append(field)
    return names


def key_function(value: object, option: str, task: Task) -> KeyFunction | None:
    """A function of (args, kwargs) giving the key, from a callable or a template (over the
    call's arguments by name: kwargs, and positional args bound to their parameters)."""
    if value is None or value == "":
        return None
    if callable(value):
        fn: Callable[..., Any] = value
        return lambda args, kwargs: str(fn(*args, **kwargs))
    if not isinstance(value, str):
        raise ImproperlyConfigured(
            f"{option} of task {task.name!r} is {value!r}; give a callable of the task's "
            f'args and kwargs, or a template over its kwargs such as "{{tenant}}"'
        )
    try:
        names = template_fields(value)
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"{option} of task {task.name!r} is {value!r}: {exc}; give a template over "
            f'the task\'s kwargs such as "{{tenant}}", or a callable'
        ) from None
    missing = [name for name in names if not _takes_kwarg(task, name)]
    if missing:
        raise ImproperlyConfigured(
            f"{option} {value!r} of task {task.name!r} names {missing[0]!r}, which is not an "
            f"argument of the task; name one of its kwargs, or give a callable"
        )
    signature = getattr(task, "_signature", None)

    def from_template(args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        values = dict(kwargs)
        if args and signature is not None:  # add(2, tenant="x") and add(2, "x") alike
            with contextlib.suppress(TypeError):  # a call that does not fit: kwargs only
                values = {**signature.bind_partial(*args, **kwargs).arguments, **kwargs}
        return value.format_map(_Kwargs(values, value))

    return from_template


class _Kwargs(dict[str, Any]):
    def __init__(self, kwargs: Mapping[str, Any], template: str) -> None:
        super().__init__(kwargs)
        self.template = template

    def __missing__(self, name: str) -> Any:
        raise KeyError(f"key template {self.template!r} needs kwarg {name!r}, not given")


def _takes_kwarg(task: Task, name: str) -> bool:
    signature = getattr(task, "_signature", None)
    if signature is None:
        return True  # nothing to check against: the call tells
    params = signature.parameters
    if name in params:
        return params[name].kind is not inspect.Parameter.POSITIONAL_ONLY
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


@dataclass(frozen=True)
class FlowSpec:
    """One task's flow options, resolved against the settings."""

    task_name: str
    rate_per_s: float | None = None
    rate_scope: str = "worker"
    rate_key: KeyFunction | None = None
    max_concurrency: int | None = None
    unique_for_s: float | None = None
    unique_key: KeyFunction | None = None

    @property
    def active(self) -> bool:
        return bool(self.rate_per_s or self.max_concurrency)


def spec_for(task: Task, conf: Settings) -> FlowSpec:
    """Read and check *task*'s options; raises ImproperlyConfigured naming the task."""
    name = task.name
    rate = task.rate_limit if task.rate_limit is not None else conf.task_default_rate_limit
    per_s = parse_rate(rate, name)
    scope = getattr(task, "rate_limit_scope", None) or conf.task_rate_limit_scope or "worker"
    if scope not in SCOPES:
        raise ImproperlyConfigured(
            f"rate_limit_scope of task {name!r} is {scope!r}; use 'worker' (Celery's) or "
            f"'global' (across every worker sharing the broker)"
        )
    cap = getattr(task, "max_concurrency", None)
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise ImproperlyConfigured(
            f"max_concurrency of task {name!r} is {cap!r}; give a whole number of runs, 1 or more"
        )
    unique_for = getattr(task, "unique_for", None)
    if unique_for is not None and (
        isinstance(unique_for, bool) or not isinstance(unique_for, (int, float)) or unique_for <= 0
    ):
        raise ImproperlyConfigured(
            f"unique_for of task {name!r} is {unique_for!r}; give the seconds the lock lasts "
            f"at most, such as unique_for=3600"
        )
    return FlowSpec(
        task_name=name,
        rate_per_s=per_s,
        rate_scope=scope,
        rate_key=key_function(getattr(task, "rate_limit_key", None), "rate_limit_key", task),
        max_concurrency=cap,
        unique_for_s=float(unique_for) if unique_for else None,
        unique_key=key_function(getattr(task, "unique_key", None), "unique_key", task),
    )


def check_task(task: Task, conf: Settings) -> None:
    """Raise now (decoration, annotations, config load) if *task*'s flow options are bad."""
    spec_for(task, conf)
