"""The table the prefork manager and its children share: what each child is running now.

One fixed-size record per child in an anonymous shared mapping made before the first fork.
A child writes its record when a task starts and clears it when the task ends; the manager
reads it to enforce hard time limits and to know which message a dead child was holding.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass

_FORMAT = "=ddB7x64s200s64s"  # started_at, hard_limit_s, acks_late, task_id, task_name, receipt
_SIZE = struct.calcsize(_FORMAT)
_STARTING, _WAITING, _CONSUMING, _EMPTY = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class Running:
    started_at: float
    hard_limit_s: float | None
    acks_late: bool
    task_id: str
    task_name: str
    receipt: str


def _encode(text: str, size: int) -> bytes:
    return text.encode("utf-8")[:size]


def _decode(raw: bytes) -> str:
    return raw.rstrip(b"\x00").decode("utf-8", "replace")


class SlotTable:
    def __init__(self, count: int) -> None:
        self.count = count
        self._map = mmap.mmap(-1, max(1, count) * _SIZE)
        # 1 byte a child: 0 not consuming yet, 1 idle and asking for work, 2 consuming,
        # 3 no child in this slot (an autoscaled pool has fewer children than slots)
        self._waiting = mmap.mmap(-1, max(1, count))
        self._waiting[:] = bytes([_EMPTY]) * max(1, count)

    def reset(self, index: int) -> None:
        """A (re)spawned child has not fetched anything yet."""
        self._waiting[index] = _STARTING

    def vacate(self, index: int) -> None:
        """No child in this slot any more (the pool shrank): it is neither idle nor busy."""
        self._waiting[index] = _EMPTY
        self.clear(index)

    def set_waiting(self, index: int, waiting: bool) -> None:
        self._waiting[index] = _WAITING if waiting else _CONSUMING

    def sibling_waiting(self, index: int) -> bool:
        """Is another child idle and asking the broker for work?"""
        return any(self._waiting[i] == _WAITING for i in range(self.count) if i != index)

    def siblings_consuming(self, index: int) -> bool:
        """Is every other child busy with work of its own (none idle, none still starting)?
        Only then may a child hold more messages than the one it runs."""
        return all(self._waiting[i] >= _CONSUMING for i in range(self.count) if i != index)

    def start(
        self,
        index: int,
        task_id: str,
        task_name: str,
        receipt: str,
        hard_limit_s: float | None,
        acks_late: bool,
        now: float,
    ) -> None:
        # started_at last, so the manager never sees a half-written record as running
        record = struct.pack(
            _FORMAT,
            0.0,
            hard_limit_s or 0.0,
            int(acks_late),
            _encode(task_id, 64),
            _encode(task_name, 200),
            _encode(receipt, 64),
        )
        offset = index * _SIZE
        self._map[offset : offset + _SIZE] = record
        self._map[offset : offset + 8] = struct.pack("=d", now)

    def clear(self, index: int) -> None:
        offset = index * _SIZE
        self._map[offset : offset + 8] = struct.pack("=d", 0.0)

    def running(self, index: int) -> Running | None:
        offset = index * _SIZE
        started, hard, acks_late, task_id, name, receipt = struct.unpack(
            _FORMAT, self._map[offset : offset + _SIZE]
        )
        if started <= 0:
            return None
        return Running(
            started,
            hard or None,
            bool(acks_late),
            _decode(task_id),
            _decode(name),
            _decode(receipt),
        )

    def close(self) -> None:
        self._map.close()
        self._waiting.close()
