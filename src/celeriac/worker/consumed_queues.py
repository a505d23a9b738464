"""The queues a running worker consumes, changed at run time by ``add_consumer`` and
``cancel_consumer``.

The list lives in an anonymous shared mapping made before the first fork, so the prefork
manager (whose remote-control thread changes it) and every child (whose consumer reads it)
see one list. A consumer checks the version number before each fetch, a read of eight
bytes, and takes the new list when it moved.
"""

from __future__ import annotations

import mmap
import struct
import threading
from collections.abc import Sequence

import orjson

SIZE = 64 * 1024  # room for about a thousand queue names
_HEADER = struct.Struct("=QI")  # version, length of the JSON list that follows


class ConsumedQueues:
    def __init__(self, names: Sequence[str]) -> None:
        self._map = mmap.mmap(-1, SIZE)
        self._lock = threading.Lock()
        self.set(names)

    @property
    def version(self) -> int:
        return int(struct.unpack_from("=Q", self._map, 0)[0])

    def names(self) -> list[str]:
        """The list as it is now (read again when a write raced with the read)."""
        for _ in range(100):
            before = self.version
            _, length = _HEADER.unpack_from(self._map, 0)
            raw = self._map[_HEADER.size : _HEADER.size + length]
            if before % 2 == 0 and self.version == before:
                return [str(name) for name in orjson.loads(raw)]
        raise RuntimeError("the shared queue list kept changing while being read")

    def set(self, names: Sequence[str]) -> None:
        raw = orjson.dumps(list(dict.fromkeys(names)))
        if _HEADER.size + len(raw) > SIZE:
            raise ValueError(
                f"too many queues to consume ({len(names)}); the list must fit in {SIZE} bytes"
            )
        with self._lock:
            version = self.version
            struct.pack_into("=Q", self._map, 0, version + 1)  # odd: being written
            self._map[_HEADER.size : _HEADER.size + len(raw)] = raw
            _HEADER.pack_into(self._map, 0, version + 2, len(raw))

    def add(self, name: str) -> bool:
        """Consume *name* too; False when it was consumed already."""
        current = self.names()
        if name in current:
            return False
        self.set([*current, name])
        return True

    def remove(self, name: str) -> bool:
        """Stop consuming *name*; False when it was not consumed."""
        current = self.names()
        if name not in current:
            return False
        self.set([q for q in current if q != name])
        return True
