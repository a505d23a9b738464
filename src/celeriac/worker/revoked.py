"""Revoked task ids this process heard about directly (the remote-control listener), so a
message already fetched and waiting here is dropped at once, not at the next refresh; and
the ids of the tasks running in this process, which a revoke leaves to finish (Celery's
"active requests")."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

_lock = threading.Lock()
_ids: set[str] = set()


def note(task_ids: list[str]) -> None:
    with _lock:
        _ids.update(task_ids)


def is_revoked(task_id: str) -> bool:
    return task_id in _ids


_running: set[str] = set()  # set.add/discard are atomic under the GIL
_running_stamps: dict[str, dict[str, Any]] = {}  # the stamps of the running stamped tasks


def started(task_id: str, stamps: Mapping[str, Any] | None = None) -> None:
    _running.add(task_id)
    if stamps:
        _running_stamps[task_id] = dict(stamps)


def finished(task_id: str) -> None:
    _running.discard(task_id)
    _running_stamps.pop(task_id, None)


def running_here() -> set[str]:
    """The ids of the tasks this process is running now."""
    return set(_running)


# revoke_by_stamped_headers: each revoked (stamp name, value) is kept as a token among the
# revoked ids (so the broker keeps it for every process and for workers started later,
# with the ids' expiry), and in this process at once
STAMP_PREFIX = "stamp\x00"
_stamp_tokens: set[str] = set()


def stamp_token(name: str, value: Any) -> str:
    return f"{STAMP_PREFIX}{name}\x00{json.dumps(value, sort_keys=True, default=str)}"


def stamp_tokens(headers: Mapping[str, Any]) -> list[str]:
    """The tokens for ``{name: value or [values]}`` (a revoke_by_stamped_headers request)."""
    return [stamp_token(name, value) for name, values in headers.items() for value in _all(values)]


def note_stamps(tokens: list[str]) -> None:
    with _lock:
        _stamp_tokens.update(tokens)


def revoked_stamp(headers: Mapping[str, Any], known: set[str]) -> dict[str, Any] | None:
    """The stamp ``{name: value}`` of a message's headers that was revoked (a token in
    *known* or heard here), or None."""
    stamps = headers.get("stamps") or {}
    for name in headers.get("stamped_headers") or ():
        value = stamps.get(name) if isinstance(stamps, Mapping) else None
        if value is None:
            continue
        for one in _all(value):
            token = stamp_token(name, one)
            if token in known or token in _stamp_tokens:
                return {name: one}
    return None


def running_with_stamps(headers: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The running tasks (id: matching stamps) that carry one of *headers*' stamps."""
    wanted = set(stamp_tokens(headers))
    found: dict[str, dict[str, Any]] = {}
    for task_id, stamps in list(_running_stamps.items()):
        for name, value in stamps.items():
            for one in _all(value):
                if stamp_token(name, one) in wanted:
                    found.setdefault(task_id, {})[name] = one
    return found


def is_stamp_token(value: str) -> bool:
    return value.startswith(STAMP_PREFIX)


def _all(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple, set)) else [value]
