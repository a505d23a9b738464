"""Revoked task ids this process heard about directly (the remote-control listener), so a
message already fetched and waiting here is dropped at once, not at the next refresh; and
the ids of the tasks running in this process, which a revoke leaves to finish (Celery's
"active requests")."""

from __future__ import annotations

import json
import mmap
import multiprocessing
import os
import struct
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from ..pids import pid_alive

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
        if os.getpid() != _HOME_PID:  # a forked pool child: its parent answers revokes
            _shared.put(task_id, stamps)


def finished(task_id: str) -> None:
    _running.discard(task_id)
    if _running_stamps.pop(task_id, None) is not None and os.getpid() != _HOME_PID:
        _shared.drop(task_id)


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
    """The running tasks (id: matching stamps) that carry one of *headers*' stamps: in this
    process, or in the pool children forked from it."""
    wanted = set(stamp_tokens(headers))
    found: dict[str, dict[str, Any]] = {}
    for task_id, stamps in [*_running_stamps.items(), *_shared.entries()]:
        for name, value in stamps.items():
            for one in _all(value):
                if stamp_token(name, one) in wanted:
                    found.setdefault(task_id, {})[name] = one
    return found


def is_stamp_token(value: str) -> bool:
    return value.startswith(STAMP_PREFIX)


def _all(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple, set)) else [value]


class _SharedStamps:
    """The stamps of the stamped tasks running in forked pool children, in memory shared
    with the parent (made before the fork): one fixed-size entry per running stamped task,
    ``pid, length, JSON [task_id, stamps]``. Entries of a child that died are skipped by
    the caller, which only acts on ids its pool says are running."""

    ENTRIES = 128
    SIZE = 2048
    _HEAD = struct.Struct("<qI")

    def __init__(self) -> None:
        self._map = mmap.mmap(-1, self.ENTRIES * self.SIZE)
        self._lock = multiprocessing.Lock()

    def put(self, task_id: str, stamps: Mapping[str, Any]) -> None:
        data = json.dumps([task_id, dict(stamps)], default=str).encode()
        if len(data) > self.SIZE - self._HEAD.size:
            return  # stamps too large to share: a terminate by stamps will not find it
        with self._lock:
            for offset in self._offsets():
                pid, _ = self._HEAD.unpack_from(self._map, offset)
                if pid == 0 or not pid_alive(pid):
                    self._HEAD.pack_into(self._map, offset, os.getpid(), len(data))
                    start = offset + self._HEAD.size
                    self._map[start : start + len(data)] = data
                    return

    def drop(self, task_id: str) -> None:
        pid = os.getpid()
        with self._lock:
            for offset in self._offsets():
                owner, length = self._HEAD.unpack_from(self._map, offset)
                if owner == pid and self._read(offset, length)[0] == task_id:
                    self._HEAD.pack_into(self._map, offset, 0, 0)

    def entries(self) -> list[tuple[str, dict[str, Any]]]:
        found: list[tuple[str, dict[str, Any]]] = []
        for offset in self._offsets():
            owner, length = self._HEAD.unpack_from(self._map, offset)
            if owner:
                try:
                    task_id, stamps = self._read(offset, length)
                except ValueError:  # caught mid-write: it is read again on the next revoke
                    continue
                found.append((str(task_id), dict(stamps)))
        return found

    def _read(self, offset: int, length: int) -> Any:
        start = offset + self._HEAD.size
        return json.loads(bytes(self._map[start : start + length]))

    def _offsets(self) -> Iterator[int]:
        return iter(range(0, self.ENTRIES * self.SIZE, self.SIZE))


_HOME_PID = os.getpid()  # the process this module was loaded in (a prefork parent)
_shared = _SharedStamps()
