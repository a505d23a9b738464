"""Celery's task protocol 1: read a message whose body holds the whole request.

Protocol 1 (what Celery sends with ``task_protocol = 1``, and what old clients always send)
puts everything in the body: ``{"task", "id", "args", "kwargs", "retries", "eta", "expires",
"taskset", "group_index", "chord", "callbacks", "errbacks", "timelimit", "utc"}``; the
headers hold only what the caller added. The worker reads it into the same
:class:`~celeriac.protocol.TaskMessage` a protocol 2 message becomes, with the headers a
protocol 2 sender would have written, so every later step (expiry, ETA, retry, workflows,
results) is the one path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .errors import InvalidMessage

# the body fields that become protocol 2 headers of the same name
_COPIED = ("retries", "group_index", "root_id", "parent_id", "shadow", "origin")


def is_v1_body(decoded: Any) -> bool:
    """Whether a decoded body is a protocol 1 request (a mapping naming its task and id,
    neither empty)."""
    return (
        isinstance(decoded, dict)
        and isinstance(decoded.get("task"), str)
        and isinstance(decoded.get("id"), str)
        and bool(decoded["task"])
        and bool(decoded["id"])
    )


def headers_and_embed(
    decoded: dict[str, Any], headers: dict[str, Any]
) -> tuple[list[Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(args, kwargs, embed, headers)`` of a protocol 1 body, the headers in protocol 2's
    layout with the caller's own headers kept."""
    task_id: str = decoded["id"]
    args = decoded.get("args")
    kwargs = decoded.get("kwargs")
    args = [] if args is None else args
    kwargs = {} if kwargs is None else kwargs
    if not isinstance(args, (list, tuple)):
        raise InvalidMessage(
            f"protocol 1 args is {type(args).__name__}, not a list", task_id=task_id
        )
    if not isinstance(kwargs, dict):
        raise InvalidMessage(
            f"protocol 1 kwargs is {type(kwargs).__name__}, not a dict", task_id=task_id
        )
    utc = decoded.get("utc", True) is not False
    merged = dict(headers)
    merged.update(
        {
            "lang": "py",
            "task": decoded["task"],
            "id": task_id,
            "eta": _as_utc(decoded.get("eta"), utc),
            "expires": _as_utc(decoded.get("expires"), utc),
            "group": decoded.get("taskset") or decoded.get("group"),
            "timelimit": _timelimit(decoded.get("timelimit")),
            "argsrepr": _short(repr(tuple(args))),
            "kwargsrepr": _short(repr(kwargs)),
            "protocol": 1,
        }
    )
    for name in _COPIED:
        if decoded.get(name) is not None:
            merged[name] = decoded[name]
    merged.setdefault("retries", 0)
    embed = {
        "callbacks": decoded.get("callbacks"),
        "errbacks": decoded.get("errbacks"),
        "chord": decoded.get("chord"),
        "chain": None,
    }
    return list(args), kwargs, embed, merged


def _short(text: str, limit: int = 1024) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _timelimit(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return list(value)
    return [None, None]


def _as_utc(value: Any, utc: bool) -> Any:
    """A naive time from a sender with ``utc=False`` is its local time: make it aware."""
    if utc or not isinstance(value, str) or not value:
        return value
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    if parsed.tzinfo is not None:
        return value
    return parsed.astimezone().isoformat()
