"""An in-process broker for unit tests and single-process runs (``memory://``).

Every app in the process that names the same ``memory://`` URL shares one store, so a
worker thread and a client in one test see the same queues. It keeps the same unacked
bookkeeping as the real brokers, so ack, requeue and dead-lettering behave alike.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import orjson

from ..config import Settings
from ..protocol import mark_redelivered
from .base import (
    PRIORITY_STEPS,
    DeadLetter,
    Delivery,
    message_priority,
    priority_key,
    priority_step,
)


@dataclass
class _Store:
    lock: threading.Condition = field(default_factory=threading.Condition)
    queues: dict[str, deque[bytes]] = field(default_factory=dict)
    unacked: dict[str, tuple[str, bytes, int]] = field(default_factory=dict)
    dead: dict[str, list[DeadLetter]] = field(default_factory=dict)
    delayed: list[tuple[float, str, bytes]] = field(default_factory=list)
    revoked: dict[str, float] = field(default_factory=dict)
    revoked_version: int = 0


_STORES: dict[str, _Store] = {}
_STORES_LOCK = threading.Lock()


def store_for(url: str) -> _Store:
    with _STORES_LOCK:
        return _STORES.setdefault(url, _Store())


def _tag_of(raw: bytes) -> tuple[str, int] | None:
    """(delivery tag, priority); a JSON object without properties or without a tag (a
    hand-written producer) is given a tag, as the Redis broker gives one."""
    try:
        envelope = orjson.loads(raw)
        properties = envelope.get("properties", {})
        tag = properties.get("delivery_tag", None) or f"celeriac-{uuid.uuid4()}"
        priority = int(properties.get("priority") or 0)
    except (ValueError, TypeError, AttributeError):
        return None
    return (tag, priority) if isinstance(tag, str) else None


class MemoryBroker:
    def __init__(self, url: str, settings: Settings | None = None) -> None:
        self.url = url
        self.owner = "memory"
        self._store = store_for(url)

    def publish(self, queue: str, envelope: bytes, priority: int = 0) -> None:
        self.publish_many([(queue, envelope, priority)])

    def publish_many(self, items: Sequence[tuple[str, bytes, int]]) -> None:
        with self._store.lock:
            for queue, envelope, priority in items:
                self._store.queues.setdefault(priority_key(queue, priority), deque()).appendleft(
                    envelope
                )
            self._store.lock.notify_all()

    def fetch(
        self,
        queues: Sequence[str],
        max_count: int,
        timeout_s: float,
        acks: Sequence[str] = (),
    ) -> list[Delivery]:
        if acks:
            self.ack(acks)
        deadline = time.monotonic() + timeout_s
        with self._store.lock:
            while True:
                taken = self._take(queues, max_count)
                remaining = deadline - time.monotonic()
                if taken or remaining <= 0:
                    return taken
                self._store.lock.wait(remaining)

    def _take(self, queues: Sequence[str], max_count: int) -> list[Delivery]:
        taken: list[Delivery] = []
        for step in PRIORITY_STEPS:
            for queue in queues:
                items = self._store.queues.get(priority_key(queue, step))
                while items and len(taken) < max_count:
                    raw = items.pop()
                    found = _tag_of(raw)
                    if found is None:
                        reason = "envelope is not a JSON object with properties.delivery_tag"
                        self._store.dead.setdefault(queue, []).insert(
                            0, DeadLetter(queue, reason, time.time(), raw)
                        )
                        taken.append(Delivery(queue, "", raw))
                        continue
                    tag, priority = found
                    self._store.unacked[tag] = (queue, raw, priority)
                    taken.append(Delivery(queue, tag, raw))
                if len(taken) >= max_count:
                    return taken
        return taken

    def ack(self, receipts: Sequence[str]) -> None:
        with self._store.lock:
            for tag in receipts:
                self._store.unacked.pop(tag, None)

    def requeue(self, receipts: Sequence[str], *, to_front: bool = True) -> int:
        restored = 0
        with self._store.lock:
            for tag in receipts:
                entry = self._store.unacked.pop(tag, None)
                if entry is None:
                    continue
                queue, raw, priority = entry
                items = self._store.queues.setdefault(priority_key(queue, priority), deque())
                (items.append if to_front else items.appendleft)(mark_redelivered(raw))
                restored += 1
            self._store.lock.notify_all()
        return restored

    def defer(self, delivery: Delivery, due_s: float) -> None:
        with self._store.lock:
            self._store.unacked.pop(delivery.receipt, None)
            found = _tag_of(delivery.raw)
            key = priority_key(delivery.queue, found[1] if found else 0)
            self._store.delayed.append((due_s, key, delivery.raw))
            self._store.delayed.sort(key=lambda item: item[0])

    def promote_due(self, now_s: float, limit: int = 1000) -> float | None:
        with self._store.lock:
            delayed = self._store.delayed
            moved = 0
            while delayed and delayed[0][0] <= now_s and moved < limit:
                _, queue, raw = delayed.pop(0)
                self._store.queues.setdefault(queue, deque()).append(raw)
                moved += 1
            if moved:
                self._store.lock.notify_all()
            return delayed[0][0] if delayed else None

    def add_revoked(self, task_ids: Sequence[str], ttl_s: float) -> None:
        with self._store.lock:
            expires = time.time() + ttl_s
            self._store.revoked.update(dict.fromkeys(task_ids, expires))
            self._store.revoked_version += 1

    def revoked_version(self) -> int:
        return self._store.revoked_version

    def revoked_ids(self) -> set[str]:
        now = time.time()
        with self._store.lock:
            return {task_id for task_id, until in self._store.revoked.items() if until > now}

    # one process: every owner is alive, so liveness is bookkeeping-free
    def restore_lost(
        self, receipts: Sequence[str], max_losses: int, owner: str | None = None
    ) -> tuple[int, int]:
        return self.requeue(receipts), 0

    def heartbeat(
        self, owners: Sequence[str], started: Mapping[str, Collection[str]] | None = None
    ) -> None:
        return None

    def retire(self, owner: str | None = None) -> None:
        return None

    def recover_owner(self, owner: str, max_losses: int | None) -> tuple[int, int]:
        return (0, 0)

    def silent_owners(self, silent_for_s: float) -> list[str]:
        return []

    def recover(
        self, dead_after_s: float, visibility_timeout_s: float | None, max_losses: int
    ) -> tuple[int, int]:
        return (0, 0)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        with self._store.lock:
            self._store.unacked.pop(delivery.receipt, None)
            self._store.dead.setdefault(delivery.queue, []).insert(
                0, DeadLetter(delivery.queue, reason, time.time(), delivery.raw)
            )

    def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        with self._store.lock:
            return list(self._store.dead.get(queue, [])[:limit])

    def dead_letter_count(self, queue: str) -> int:
        with self._store.lock:
            return len(self._store.dead.get(queue, ()))

    def requeue_dead(self, queue: str, task_id: str | None = None) -> int:
        with self._store.lock:
            letters = self._store.dead.get(queue, [])
            chosen = [d for d in letters if task_id is None or d.task_id == task_id]
            for letter in reversed(chosen):  # oldest first, each to the back of its bucket
                key = priority_key(queue, message_priority(letter.raw))
                self._store.queues.setdefault(key, deque()).appendleft(letter.raw)
            moved = {id(d) for d in chosen}
            letters[:] = [d for d in letters if id(d) not in moved]
            if chosen:
                self._store.lock.notify_all()
            return len(chosen)

    def purge_dead(self, queue: str) -> int:
        with self._store.lock:
            return len(self._store.dead.pop(queue, []))

    def queue_length(self, queue: str) -> int:
        with self._store.lock:
            return sum(
                len(self._store.queues.get(priority_key(queue, s), ())) for s in PRIORITY_STEPS
            )

    def purge(self, queues: Sequence[str]) -> int:
        removed = 0
        with self._store.lock:
            for queue in queues:
                for step in PRIORITY_STEPS:
                    items = self._store.queues.pop(priority_key(queue, step), None)
                    removed += len(items or ())
        return removed

    def unacked_count(self) -> int:
        with self._store.lock:
            return len(self._store.unacked)

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None


__all__ = ["MemoryBroker", "priority_step", "store_for"]
