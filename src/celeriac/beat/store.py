"""Where beats keep their shared state, in the broker: the last slot of each entry, the
slots claimed but not yet confirmed sent, the entries added at run time and the paused ones.

``claim`` is the one operation that makes many beats safe: a compare-and-set of an entry's
last slot, done atomically by the broker. Only the beat that saw the current last slot can
move it on, so each slot is claimed once. A claim made to send is also recorded as pending
until ``confirm``; if its beat dies first, another one takes it over once the claim's lease
runs out and sends it, with the same task id.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol
from urllib.parse import urlsplit

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from ..config import Settings


@dataclass(frozen=True)
class Pending:
    """A slot claimed to be sent whose sending is not confirmed yet."""

    name: str
    slot: str  # as written by format_slot
    lease_until_s: float
    owner: str


class BeatStore(Protocol):
    def last_slots(self) -> dict[str, str]:
        """Each entry's last claimed slot (format_slot text)."""
        ...

    def claim(self, name: str, expected: str | None, slot: str, pending: Pending | None) -> bool:
        """Move *name*'s last slot from *expected* (None: no slot yet) to *slot*, and record
        *pending* with it; False, changing nothing, when the last slot is not *expected*."""
        ...

    def confirm(self, name: str, slot: str) -> None: ...

    def expired(self, now_s: float) -> list[Pending]: ...

    def take_over(self, claim: Pending, now_s: float) -> bool:
        """Make *claim* (same name and slot, new owner and lease) ours if its lease ran out."""
        ...

    def entries(self) -> dict[str, str]:
        """The entries added at run time: name -> JSON definition."""
        ...

    def put_entry(self, name: str, definition: str) -> None: ...

    def delete_entry(self, name: str) -> bool: ...

    def paused(self) -> set[str]: ...

    def set_paused(self, name: str, is_paused: bool) -> None: ...

    def forget(self, name: str) -> None:
        """Drop *name*'s last slot (after removal, so a new entry of that name starts fresh)."""
        ...

    def close(self) -> None: ...


def open_store(url: str, settings: Settings | None = None) -> BeatStore:
    """The beat store on the broker at *url* (redis://, rediss://, unix://, sentinel://,
    sqlite://, memory://). *settings* (the app's) are read as the broker reads them: the
    Sentinel ``master_name`` in ``broker_transport_options``, TLS in ``broker_use_ssl``."""
    scheme = urlsplit(url.split(";", 1)[0]).scheme.lower()
    if scheme in ("redis", "rediss", "unix", "sentinel"):
        from .store_redis import RedisBeatStore

        return RedisBeatStore(url, settings)
    if scheme == "sqlite":
        from .store_sqlite import SqliteBeatStore

        return SqliteBeatStore(url)
    if scheme == "memory":
        return MemoryBeatStore.for_url(url)
    raise ConfigurationError(
        f"beat cannot keep its schedule on the broker {scheme}://; "
        f"use a redis://, sentinel://, sqlite:/// or memory:// broker_url"
    )


class MemoryBeatStore:
    """The memory:// broker's store: shared by the beats of one process."""

    _stores: ClassVar[dict[str, MemoryBeatStore]] = {}
    _stores_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, str] = {}
        self._pending: dict[tuple[str, str], Pending] = {}
        self._entries: dict[str, str] = {}
        self._paused: set[str] = set()

    @classmethod
    def for_url(cls, url: str) -> MemoryBeatStore:
        with cls._stores_lock:
            return cls._stores.setdefault(url, cls())

    def last_slots(self) -> dict[str, str]:
        with self._lock:
            return dict(self._last)

    def claim(self, name: str, expected: str | None, slot: str, pending: Pending | None) -> bool:
        with self._lock:
            if self._last.get(name) != expected:
                return False
            self._last[name] = slot
            if pending is not None:
                self._pending[(name, slot)] = pending
            return True

    def confirm(self, name: str, slot: str) -> None:
        with self._lock:
            self._pending.pop((name, slot), None)

    def expired(self, now_s: float) -> list[Pending]:
        with self._lock:
            return [p for p in self._pending.values() if p.lease_until_s < now_s]

    def take_over(self, claim: Pending, now_s: float) -> bool:
        with self._lock:
            current = self._pending.get((claim.name, claim.slot))
            if current is None or current.lease_until_s >= now_s:
                return False
            self._pending[(claim.name, claim.slot)] = claim
            return True

    def entries(self) -> dict[str, str]:
        with self._lock:
            return dict(self._entries)

    def put_entry(self, name: str, definition: str) -> None:
        with self._lock:
            self._entries[name] = definition

    def delete_entry(self, name: str) -> bool:
        with self._lock:
            return self._entries.pop(name, None) is not None

    def paused(self) -> set[str]:
        with self._lock:
            return set(self._paused)

    def set_paused(self, name: str, is_paused: bool) -> None:
        with self._lock:
            if is_paused:
                self._paused.add(name)
            else:
                self._paused.discard(name)

    def forget(self, name: str) -> None:
        with self._lock:
            self._last.pop(name, None)

    def close(self) -> None:
        return None


def pending_from_text(name: str, slot: str, text: str) -> Pending:
    """A Pending from its stored ``"<lease_until> <owner>"`` text."""
    lease, _, owner = text.partition(" ")
    return Pending(name, slot, float(lease), owner)


def pending_text(claim: Pending) -> str:
    return f"{claim.lease_until_s:.6f} {claim.owner}"


def decode(mapping: Mapping[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in mapping.items()}
