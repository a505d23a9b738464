"""The broker interface: what producers and the consumer need from any transport."""

from __future__ import annotations

import base64
import binascii
import socket
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

PRIORITY_STEPS = (0, 3, 6, 9)
PRIORITY_SEP = "\x06\x16"


def priority_step(priority: int) -> int:
    """Celery's priority bucket on Redis: 0-2 -> 0, 3-5 -> 3, 6-8 -> 6, 9 -> 9."""
    priority = max(0, min(9, int(priority)))
    return max(step for step in PRIORITY_STEPS if step <= priority)


def priority_key(queue: str, priority: int) -> str:
    step = priority_step(priority)
    return queue if step == 0 else f"{queue}{PRIORITY_SEP}{step}"


def owner_id(client_name: str) -> str:
    """Who holds a fetched message: one id per consuming process, stable and readable."""
    return f"{client_name}@{socket.gethostname()}"


def owner_pid_here(owner: str) -> int | None:
    """The pid of *owner* when it is a process of this host (``<name>.<pid>@<host>``)."""
    name, _, host = owner.rpartition("@")
    if host != socket.gethostname():
        return None
    _, _, pid = name.rpartition(".")
    return int(pid) if pid.isdigit() else None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message taken from a queue and held until ack or reject."""

    queue: str
    receipt: str  # what the broker needs to ack this exact copy (the delivery tag)
    raw: bytes  # the envelope as it sat on the queue


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message the worker could not run, kept with the reason."""

    queue: str
    reason: str
    time: float
    raw: bytes

    @property
    def task_id(self) -> str | None:
        """The task id from the envelope's headers, or from a protocol 1 message's JSON body
        (which has no such headers); None when neither has it."""
        return _header_text(self.raw, "id") or protocol1_field(self.raw, "id")

    @property
    def task_name(self) -> str | None:
        return _header_text(self.raw, "task") or protocol1_field(self.raw, "task")


def _envelope(raw: bytes) -> dict[str, Any] | None:
    try:
        envelope = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return envelope if isinstance(envelope, dict) else None


def _header_text(raw: bytes, name: str) -> str | None:
    headers = (_envelope(raw) or {}).get("headers")
    value = headers.get(name) if isinstance(headers, dict) else None
    return value if isinstance(value, str) and value else None


def protocol1_field(raw: bytes, name: str) -> str | None:
    """A text field of a protocol 1 message's body (``task``, ``id``): read only from a JSON
    body (a pickled one is never unpickled here); None for anything else."""
    envelope = _envelope(raw)
    if envelope is None or envelope.get("content-type") != "application/json":
        return None
    body = envelope.get("body")
    if not isinstance(body, str):
        return None
    properties = envelope.get("properties")
    encoding = properties.get("body_encoding") if isinstance(properties, dict) else None
    try:
        data = base64.b64decode(body, validate=True) if encoding == "base64" else body.encode()
        decoded = orjson.loads(data)
    except (binascii.Error, ValueError):  # orjson.JSONDecodeError is a ValueError
        return None
    value = decoded.get(name) if isinstance(decoded, dict) else None
    return value if isinstance(value, str) and value else None


def message_priority(raw: bytes) -> int:
    """The envelope's ``properties.priority`` (0 when missing or unreadable), for putting a
    message back into the right bucket."""
    properties = (_envelope(raw) or {}).get("properties")
    value = properties.get("priority") if isinstance(properties, dict) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return max(0, min(9, int(value)))
    return 0


class Broker(Protocol):
    """Moves task messages between producers and workers.

    ``fetch`` must take messages atomically into the broker's unacked store, so a worker
    that dies between fetch and ack loses nothing.
    """

    url: str
    owner: str  # this process's owner id (see owner_id)

    def publish(self, queue: str, envelope: bytes, priority: int = 0) -> None: ...

    def publish_many(self, items: Sequence[tuple[str, bytes, int]]) -> None: ...

    def fetch(
        self, queues: Sequence[str], max_count: int, timeout_s: float, acks: Sequence[str] = ()
    ) -> list[Delivery]:
        """Take up to *max_count* messages, after applying the deferred *acks*."""
        ...

    def ack(self, receipts: Sequence[str]) -> None: ...

    def requeue(self, receipts: Sequence[str], *, to_front: bool = True) -> int: ...

    def restore_lost(
        self, receipts: Sequence[str], max_losses: int, owner: str | None = None
    ) -> tuple[int, int]: ...

    def heartbeat(
        self, owners: Sequence[str], started: Mapping[str, Collection[str]] | None = None
    ) -> None:
        """Mark *owners* alive. *started*: for an owner it names, the receipts that owner
        has begun; the rest of what it holds is recorded as never started, so if it dies
        before its next beat those are put back without counting a loss (a whole worker
        killed again and again must not dead-letter the messages it had only prefetched)."""
        ...

    def retire(self, owner: str | None = None) -> None: ...

    def recover_owner(self, owner: str, max_losses: int | None) -> tuple[int, int]:
        """Put back everything a dead *owner* held and forget it; with *max_losses*, each
        message counts a loss (None: the owner is known not to have started them)."""
        ...

    def silent_owners(self, silent_for_s: float) -> list[str]:
        """Owners whose last heartbeat is at least *silent_for_s* old."""
        ...

    def recover(
        self, dead_after_s: float, visibility_timeout_s: float | None, max_losses: int
    ) -> tuple[int, int]: ...

    def add_revoked(self, task_ids: Sequence[str], ttl_s: float) -> None: ...

    def revoked_version(self) -> int: ...

    def revoked_ids(self) -> set[str]: ...

    def defer(self, delivery: Delivery, due_s: float) -> None: ...

    def promote_due(self, now_s: float, limit: int = 1000) -> float | None: ...

    def dead_letter(self, delivery: Delivery, reason: str) -> None: ...

    def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        """The newest *limit* dead letters of *queue*, newest first."""
        ...

    def dead_letter_count(self, queue: str) -> int: ...

    def requeue_dead(self, queue: str, task_id: str | None = None) -> int:
        """Move dead letters of *queue* (all, or those of *task_id*) back to the back of the
        queue, oldest first; returns how many moved."""
        ...

    def purge_dead(self, queue: str) -> int:
        """Delete the dead letters of *queue* for good; returns how many."""
        ...

    def queue_length(self, queue: str) -> int: ...

    def purge(self, queues: Sequence[str]) -> int: ...

    def ping(self) -> None: ...

    def close(self) -> None: ...
