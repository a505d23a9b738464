"""What remote control changes in a running worker, shared by all its processes: the queues
it consumes (``add_consumer``, ``cancel_consumer``) and task settings (``rate_limit``,
``time_limit``).

The state lives in an anonymous shared mapping made before the first fork, so the prefork
manager (whose remote-control thread changes it) and every child (whose consumer follows
it) see one copy. A consumer checks the version number before each fetch, a read of eight
bytes, and applies the new state when it moved.
"""

from __future__ import annotations

import logging
import mmap
import struct
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from ..app import Celeriac

logger = logging.getLogger(__name__)

SIZE = 256 * 1024  # room for about a thousand queue names and task settings
_HEADER = struct.Struct("=QI")  # version (odd while written), length of the JSON that follows
TASK_SETTINGS = ("rate_limit", "time_limit", "soft_time_limit")


class ConsumedQueues:
    def __init__(self, names: Sequence[str]) -> None:
        self._map = mmap.mmap(-1, SIZE)
        self._lock = threading.Lock()
        self._write({"queues": list(dict.fromkeys(names)), "tasks": {}})

    @property
    def version(self) -> int:
        return int(struct.unpack_from("=Q", self._map, 0)[0])

    def _read(self) -> dict[str, Any]:
        for _ in range(100):
            before = self.version
            _, length = _HEADER.unpack_from(self._map, 0)
            raw = self._map[_HEADER.size : _HEADER.size + length]
            if before % 2 == 0 and self.version == before:
                value = orjson.loads(raw)
                return value if isinstance(value, dict) else {}
        raise RuntimeError("the shared remote-control state kept changing while being read")

    def _write(self, state: dict[str, Any]) -> None:
        raw = orjson.dumps(state)
        if _HEADER.size + len(raw) > SIZE:
            raise ValueError(
                f"too many queues or task settings to share ({len(raw)} bytes, at most {SIZE})"
            )
        version = self.version
        struct.pack_into("=Q", self._map, 0, version + 1)  # odd: being written
        self._map[_HEADER.size : _HEADER.size + len(raw)] = raw
        _HEADER.pack_into(self._map, 0, version + 2, len(raw))

    def names(self) -> list[str]:
        """The queues to consume now."""
        return [str(name) for name in self._read().get("queues") or []]

    def follow(self, app: Celeriac) -> list[str]:
        """Apply the task settings to this process's tasks; return the queues."""
        state = self._read()
        for name, settings in (state.get("tasks") or {}).items():
            task = app.tasks.get(name)
            if task is None:
                continue
            for key, value in settings.items():
                if key in TASK_SETTINGS:
                    setattr(task, key, value)
        return [str(name) for name in state.get("queues") or []]

    def add(self, name: str) -> bool:
        """Consume *name* too; False when it was consumed already."""
        with self._lock:
            state = self._read()
            if name in state["queues"]:
                return False
            state["queues"].append(name)
            self._write(state)
            return True

    def remove(self, name: str) -> bool:
        """Stop consuming *name*; False when it was not consumed."""
        with self._lock:
            state = self._read()
            if name not in state["queues"]:
                return False
            state["queues"] = [q for q in state["queues"] if q != name]
            self._write(state)
            return True

    def set_task(self, task_name: str, **settings: Any) -> None:
        """New values for a task's settings, for every process to apply."""
        with self._lock:
            state = self._read()
            state.setdefault("tasks", {}).setdefault(task_name, {}).update(settings)
            self._write(state)
