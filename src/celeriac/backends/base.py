"""The result backend interface, and the result meta that Celery reads and writes.

Meta JSON keys, in Celery's order: status, result, traceback, children, date_done,
[group_id, parent_id], task_id; celeriac adds ``place`` (where the task ran), which Celery
clients ignore.
"""

from __future__ import annotations

import builtins
import importlib
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Protocol

from .. import errors, states
from ..errors import SerializationError
from ..serialization import dumps_json

Meta = dict[str, Any]

# celeriac errors that Celery defines in celery.exceptions: stored under that module so a
# Celery client raises its own class, and read back as ours.
CELERY_EXCEPTION_NAMES = {
    "NotRegistered": errors.NotRegistered,
    "TaskRevokedError": errors.TaskRevokedError,
    "TimeLimitExceeded": errors.TimeLimitExceeded,
    "SoftTimeLimitExceeded": errors.SoftTimeLimitExceeded,
    "WorkerLostError": errors.WorkerLostError,
    "MaxRetriesExceededError": errors.MaxRetriesExceededError,
    "Retry": errors.Retry,
    "Reject": errors.Reject,
    "ChordError": errors.TaskError,
}


class Backend(Protocol):
    """Stores task states and results, and wakes waiters when one is ready."""

    url: str

    def store(self, task_id: str, meta: Meta, expires_s: float | None) -> None: ...

    def get_meta(self, task_id: str) -> Meta | None: ...

    def wait_for(self, task_id: str, timeout_s: float | None, interval_s: float) -> Meta: ...

    def forget(self, task_id: str) -> None: ...

    def close(self) -> None: ...


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def build_meta(
    task_id: str,
    state: str,
    result: Any,
    *,
    traceback: str | None = None,
    children: list[Any] | None = None,
    group_id: str | None = None,
    parent_id: str | None = None,
    place: Mapping[str, Any] | None = None,
    extended: Mapping[str, Any] | None = None,
) -> Meta:
    meta: Meta = {
        "status": state,
        "result": result,
        "traceback": traceback,
        "children": children or [],
        "date_done": now_iso() if state in states.READY_STATES else None,
    }
    if group_id:
        meta["group_id"] = group_id
    if parent_id:
        meta["parent_id"] = parent_id
    if extended:
        meta.update(extended)
    meta["task_id"] = task_id
    if place:
        meta["place"] = dict(place)
    return meta


def encode_exception(exc: BaseException) -> dict[str, Any]:
    """Celery's exception form: type name, args as a list, module."""
    cls = type(exc)
    module = cls.__module__
    if module.startswith("celeriac.") and cls.__name__ in CELERY_EXCEPTION_NAMES:
        module = "celery.exceptions"
    if isinstance(exc, errors.RemoteTaskError):  # re-raised stand-in keeps the original name
        return {
            "exc_type": exc.exc_type,
            "exc_message": list(exc.args),
            "exc_module": exc.exc_module,
        }
    return {
        "exc_type": cls.__qualname__,
        "exc_message": _jsonable_args(exc.args),
        "exc_module": module,
    }


def _jsonable_args(args: tuple[Any, ...]) -> list[Any]:
    """Each arg as it is when JSON can hold it (a dict stays a dict, as Celery keeps it),
    else its repr."""
    safe: list[Any] = []
    for arg in args:
        try:
            dumps_json(arg)
        except SerializationError:
            try:
                arg = repr(arg)
            except Exception:  # a broken __repr__ must not lose the failure itself
                arg = f"<{type(arg).__name__} with a failing repr>"
        safe.append(arg)
    return safe


def decode_exception(value: Any) -> BaseException:
    """Rebuild a stored exception: its own type when importable here, else a named stand-in."""
    if not isinstance(value, Mapping) or "exc_type" not in value:
        return errors.RemoteTaskError(repr(value))
    exc_type = str(value.get("exc_type") or "Exception")
    module = str(value.get("exc_module") or "builtins")
    message = value.get("exc_message")
    args = tuple(message) if isinstance(message, (list, tuple)) else (message,)
    cls = _find_exception_class(exc_type, module)
    if cls is None:
        stand_in = errors.remote_error_class(exc_type, module)
        return stand_in(*args)
    try:
        return cls(*args)
    except Exception:  # a constructor that wants other arguments: keep the args anyway
        exc = cls.__new__(cls)
        exc.args = args
        return exc


def _find_exception_class(exc_type: str, module: str) -> type[BaseException] | None:
    if module == "celery.exceptions" and exc_type in CELERY_EXCEPTION_NAMES:
        mod = sys.modules.get("celery.exceptions")
        found = getattr(mod, exc_type, None) if mod else None
        chosen = found if isinstance(found, type) else CELERY_EXCEPTION_NAMES[exc_type]
        return chosen if issubclass(chosen, BaseException) else None
    if module == "builtins":
        found = getattr(builtins, exc_type, None)
    else:
        mod = sys.modules.get(module)
        if mod is None:
            try:
                mod = importlib.import_module(module)
            except Exception:  # not importable here: the caller builds a stand-in
                return None
        found = mod
        for part in exc_type.split("."):
            found = getattr(found, part, None)
    if isinstance(found, type) and issubclass(found, BaseException):
        return found
    return None
