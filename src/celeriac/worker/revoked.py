"""Revoked task ids this process heard about directly (the remote-control listener), so a
message already fetched and waiting here is dropped at once, not at the next refresh."""

from __future__ import annotations

import threading

_lock = threading.Lock()
_ids: set[str] = set()


def note(task_ids: list[str]) -> None:
    with _lock:
        _ids.update(task_ids)


def is_revoked(task_id: str) -> bool:
    return task_id in _ids
