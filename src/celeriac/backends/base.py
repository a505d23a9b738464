"""The result backend interface, and the result meta that Celery reads and writes.

Meta JSON keys, in Celery's order: status, result, traceback, children, date_done,
[group_id, parent_id], task_id; celeriac adds ``place`` (where the task ran), which Celery
clients ignore.

Chords are joined by the backend: each header part is recorded atomically with its task id
and group_index (duplicates count once), and the part that completes the count, or the first
part that fails, claims the right to finish the chord. The claim marker moves from absent to
a token, then to ``done`` (or to ``failed`` when the body failed before every part was in, so
the last straggler cleans up). See shared/spec/celery-wire-protocol.md §8.
"""

from __future__ import annotations

import builtins
import importlib
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol, cast

from .. import errors, states

if TYPE_CHECKING:
    from ..app import Celeriac
    from ..config import Settings
from ..errors import BackendError, ContentDisallowed, SerializationError
from ..serialization import dumps_json, loads_json

Meta = dict[str, Any]

logger = logging.getLogger(__name__)

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
    "ChordError": errors.ChordError,
    "TimeoutError": errors.TimeoutError,
    "QueueNotFound": errors.QueueNotFound,
    "InvalidTaskError": errors.InvalidTaskError,
    "Terminated": errors.Terminated,
    "AlreadyRegistered": errors.AlreadyRegistered,
    "IncompleteStream": errors.IncompleteStream,
    "Ignore": errors.Ignore,
    "ImproperlyConfigured": errors.ImproperlyConfigured,
    "SecurityError": errors.SecurityError,
    "TaskError": errors.TaskError,
    "TaskPredicate": errors.TaskPredicate,
    "CeleryError": errors.CeleriacError,
}

# where a Celery worker's stored exceptions say Celery's own come from (the time limit and
# worker-lost errors are billiard's, re-exported by celery.exceptions)
_CELERY_MODULES = ("celery.exceptions", "billiard.exceptions")
# modules whose exception classes any stored result may name: they are ours and loaded
_OWN_MODULES = ("celeriac.errors", "celeriac.exceptions")


GROUP_KEY_PREFIX = "celery-taskset-meta-"

# How long a worker may hold the right to send a chord body before another may take it,
# and how long the "done" marker keeps late duplicates of header tasks from counting again
# (Celery 5.7's values for the default join timeout).
CHORD_CLAIM_S = 10
CHORD_DONE_S = 300


@dataclass(frozen=True, slots=True)
class ChordPart:
    """One header task's outcome, as the chord join records it."""

    group_id: str
    task_id: str
    group_index: int | None
    state: str
    result: Any  # the return value, or the encoded exception for FAILURE/REVOKED

    @property
    def failed(self) -> bool:
        return self.state in states.PROPAGATE_STATES

    def entry(self) -> list[Any]:
        """Celery's ``.j`` entry: ``[1, task_id, state, result]``."""
        return [1, self.task_id, self.state, self.result]


@dataclass(frozen=True, slots=True)
class ChordClaim:
    """This worker holds the right to finish the chord: send its body, or fail it.

    ``complete`` says every part is in; then ``parts`` holds them in group_index order.
    Otherwise the claim was taken by a failed part, to fail the body at once.
    """

    group_id: str
    token: str
    complete: bool
    parts: list[ChordPart]


class Backend(Protocol):
    """Stores task states and results, and wakes waiters when one is ready.

    It also joins chords (counting header parts atomically) and keeps saved groups.
    """

    url: str

    def store(self, task_id: str, meta: Meta, expires_s: float | None) -> None: ...

    def get_meta(self, task_id: str) -> Meta | None: ...

    def get_many(self, task_ids: Sequence[str]) -> dict[str, Meta]: ...

    def wait_for(self, task_id: str, timeout_s: float | None, interval_s: float) -> Meta: ...

    def forget(self, task_id: str) -> None: ...

    def save_group(self, group_id: str, meta: Meta, expires_s: float | None) -> None: ...

    def get_group(self, group_id: str) -> Meta | None: ...

    def delete_group(self, group_id: str) -> None: ...

    def set_chord_size(self, group_id: str, size: int) -> None:
        """Start (or restart) a chord's count before its header is sent."""

    def on_chord_part_return(self, part: ChordPart) -> ChordClaim | None:
        """Record one header part; a claim when this caller must finish the chord."""

    def add_to_chord(self, group_id: str) -> None:
        """Count one more header part than the chord started with (``Task.add_to_chord``)."""

    def finish_chord(self, claim: ChordClaim, failed: bool) -> None:
        """Release a claim: clean the counters up, or (failed early) leave the last part
        to do it."""

    def close(self) -> None: ...


def chord_expires_s(settings: Settings) -> float | None:
    """How long chord counters live after their last part: ``chord_expires``, else
    ``result_expires`` (Celery's fallback); None means forever."""
    value = settings.get("chord_expires")
    if value is None:
        value = settings.get("result_expires")
    if value is None:
        return None
    seconds = float(value.total_seconds() if hasattr(value, "total_seconds") else value)
    return seconds if seconds > 0 else None


def chord_ordered(settings: Settings) -> bool:
    """Celery's ``result_chord_ordered``: keep parts in a sorted set (by group_index)."""
    options = settings.get("result_backend_transport_options") or {}
    return bool(options.get("result_chord_ordered", settings.get("result_chord_ordered", True)))


def chord_next_step(
    *, marker: str | None, complete: bool, part_failed: bool, size_known: bool
) -> str:
    """What happens after a part is recorded, given the chord's claim marker.

    ``claim``: finish the chord now (every part is in, or this part failed and fails the
    body early); ``cleanup``: the body already failed and this was the last part;
    ``wait``: nothing to do yet. The Redis Lua script follows the same table.
    """
    if marker == "failed":
        return "cleanup" if complete else "wait"
    if marker is None and (complete or (part_failed and size_known)):
        return "claim"
    return "wait"


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
    if state == states.SUCCESS and not isinstance(result, _PLAIN):
        result = _prepare_value(result)
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


_PLAIN = (int, float, str, dict, list, type(None))


def _prepare_value(result: Any) -> Any:
    """A task that returns a result (an AsyncResult or GroupResult) stores a reference to
    it, its ``as_tuple()`` form, as Celery does: ``result_from_tuple`` follows it."""
    as_tuple = getattr(result, "as_tuple", None)
    if callable(as_tuple) and not isinstance(result, tuple):
        return as_tuple()
    return result


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
    args = exc.args
    if not args:  # an error that keeps its text outside args (pydantic's ValidationError)
        text = _text_of(exc)
        args = (text,) if text else ()
    return {
        "exc_type": cls.__qualname__,
        "exc_message": _jsonable_args(args),
        "exc_module": module,
    }


def _text_of(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # a broken __str__ must not lose the failure itself
        return ""


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


def decode_exception(value: Any, app: Celeriac | None = None) -> BaseException:
    """Rebuild a stored exception, trusting the stored names as little as possible.

    A stored result is data anyone with write access to the backend can forge, so its
    ``exc_module`` is never imported on its say-so. The class is rebuilt only when it is a
    builtin, one of Celery's or celeriac's exceptions, a class in a module the *app* has
    registered tasks in and that is already loaded, or named in the app's
    ``result_exception_allowlist``; and only when it really is an exception class. Anything
    else comes back as a RemoteTaskError subclass named like the original, carrying its
    type name, module and message.
    """
    if not isinstance(value, Mapping) or "exc_type" not in value:
        return errors.RemoteTaskError(repr(value))
    exc_type = str(value.get("exc_type") or "Exception")
    module = str(value.get("exc_module") or "builtins")
    message = value.get("exc_message")
    args = tuple(message) if isinstance(message, (list, tuple)) else (message,)
    cls = _find_exception_class(exc_type, module, app)
    if cls is None:
        stand_in = errors.remote_error_class(exc_type, module)
        return stand_in(*args)
    try:
        return cls(*args)
    except Exception:  # a constructor that wants other arguments: keep the args anyway
        try:
            exc = cls.__new__(cls)
            exc.args = args
            return exc
        except Exception:  # not even that (pydantic's ValidationError): a named stand-in
            return errors.remote_error_class(exc_type, module)(*args)


def _find_exception_class(
    exc_type: str, module: str, app: Celeriac | None
) -> type[BaseException] | None:
    if module in _CELERY_MODULES and exc_type in CELERY_EXCEPTION_NAMES:
        return _celery_named(exc_type)
    if module == "builtins":
        found: Any = getattr(builtins, exc_type, None)
    elif module in _OWN_MODULES:
        found = getattr(errors, exc_type, None)
    else:
        mod = _trusted_module(module, exc_type, app)
        if mod is None:
            return None
        found = mod
        for part in exc_type.split("."):
            found = getattr(found, part, None)
        if isinstance(found, type) and found.__module__ != module:
            return None  # reached through a module it imported, not defined there
    if isinstance(found, type) and issubclass(found, BaseException):
        return found
    if found is not None:
        logger.warning(
            "stored result names %s.%s, which is not an exception class; read as a RemoteTaskError",
            module,
            exc_type,
        )
    return None


def _trusted_module(module: str, exc_type: str, app: Celeriac | None) -> Any:
    """The loaded module a stored exception may come from, or None (never imports it,
    unless the app's allow-list names it)."""
    if app is None:
        return None
    allowlist = _allowlist(app)
    if module in allowlist or f"{module}.{exc_type}" in allowlist:
        found = sys.modules.get(module)
        if found is not None:
            return found
        try:  # the app's own configuration names it: importing it is the user's choice
            return importlib.import_module(module)
        except Exception:  # not importable here: the caller builds a stand-in
            return None
    if module in _task_modules(app):
        return sys.modules.get(module)
    return None


def _allowlist(app: Celeriac) -> frozenset[str]:
    names = app.conf.get("result_exception_allowlist") or ()
    if isinstance(names, str):
        names = [part.strip() for part in names.split(",")]
    return frozenset(str(name) for name in names if name)


def _task_modules(app: Celeriac) -> set[str]:
    return {str(getattr(task, "__module__", "")) for task in list(app.tasks.values())}


_BOTH: dict[str, type[BaseException]] = {}


def _celery_named(exc_type: str) -> type[BaseException]:
    """Our class for one of Celery's exceptions. When the process has also loaded Celery's
    (both packages installed side by side), a class deriving from both, so that
    ``except celeriac.errors.X`` and ``except celery.exceptions.X`` each catch it."""
    ours = cast("type[BaseException]", CELERY_EXCEPTION_NAMES[exc_type])
    mod = sys.modules.get("celery.exceptions")
    theirs = getattr(mod, exc_type, None) if mod else None
    if not (isinstance(theirs, type) and issubclass(theirs, BaseException)) or issubclass(
        ours, theirs
    ):
        return ours
    both = _BOTH.get(exc_type)
    if both is None:
        try:
            made = type(exc_type, (ours, theirs), {"__module__": ours.__module__})
            both = cast("type[BaseException]", made)
        except TypeError:  # incompatible layouts: ours alone
            return ours
        _BOTH[exc_type] = both
    return both


def decode_meta(data: bytes | str) -> Meta:
    """A stored result's meta, with kombu's typed values (a Celery worker's datetime) restored."""
    if isinstance(data, bytes) and data[:1] == b"\x80":  # pickle's protocol marker
        raise ContentDisallowed(
            "stored result is pickled (a worker with result_serializer='pickle' wrote it); "
            "celeriac never unpickles results: set result_serializer='json' on that worker"
        )
    try:
        meta = loads_json(data)
    except SerializationError as exc:
        raise BackendError(f"stored result is not JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise BackendError("stored result is not a JSON object")
    return meta
