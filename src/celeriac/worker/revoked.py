"""Revoked task ids this process heard about directly (the remote-control listener), so a
message already fetched and waiting here is dropped at once, not at the next refresh; and
the ids of the tasks running in this process, which a revoke leaves to finish (Celery's
"active requests")."""

from __future__ import annotations

import threading

_lock = threading.Lock()
_ids: set[str] = set()


def note(task_ids: list[str]) -> None:
    with _lock:
        _ids.update(task_ids)


def is_revoked(task_id: str) -> bool:
    return task_id in _ids


_running: set[str] = set()  # set.add/discard are atomic under the GIL


def started(task_id: str) -> None:
    _running.add(task_id)


def finished(task_id: str) -> None:
    _running.discard(task_id)


def running_here() -> set[str]:
    """The ids of the tasks this process is running now."""
    return set(_running)
