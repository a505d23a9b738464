"""Flow state for the memory broker: one process holds every worker, so a dict under a lock
is the shared store. Same answers as the broker-side stores; a capped task is woken by its
recheck time only (the memory broker's parked messages are not addressable)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from ..brokers.base import Delivery
from .store_base import CAP_RECHECK_S


class MemoryFlowStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tat: dict[str, float] = {}
        self._reserved: dict[tuple[str, str], tuple[str, float]] = {}
        self._slots: dict[str, dict[str, tuple[str, float]]] = {}
        self._unique: dict[str, tuple[str, str | None, float]] = {}  # task id, owner, until
        self._waiting: dict[tuple[str, str], float] = {}

    def take(
        self,
        bucket: str,
        ticket: str,
        task_name: str,
        interval_s: float,
        now_s: float,
        horizon_s: float | None = None,
    ) -> float:
        with self._lock:
            held = self._reserved.get((task_name, ticket))
            if held is not None:
                if held[1] > now_s + 0.005:
                    return held[1]
                del self._reserved[(task_name, ticket)]
                return 0.0
            tat = max(self._tat.get(bucket, 0.0), now_s)
            if horizon_s is not None and tat - now_s > horizon_s:
                return horizon_s - tat
            self._tat[bucket] = tat + interval_s
            if tat <= now_s:
                return 0.0
            self._reserved[(task_name, ticket)] = (task_name, tat)
            return tat

    def acquire(
        self, slots: str, member: str, owner: str, limit: int, ttl_s: float, now_s: float
    ) -> bool:
        with self._lock:
            held = self._live(slots, now_s)
            if member not in held and len(held) >= limit:
                return False
            held[member] = (owner, now_s + ttl_s)
            return True

    def _live(self, slots: str, now_s: float) -> dict[str, tuple[str, float]]:
        held = self._slots.setdefault(slots, {})
        for member in [m for m, (_, expires) in held.items() if expires <= now_s]:
            del held[member]
        return held

    def wait_for_slot(
        self, slots: str, limit: int, delivery: Delivery, task_name: str, ticket: str, now_s: float
    ) -> None:
        with self._lock:
            self._waiting[(task_name, ticket)] = now_s + CAP_RECHECK_S

    def release(self, slots: str, member: str, owner: str, now_s: float) -> bool:
        with self._lock:
            self._slots.get(slots, {}).pop(member, None)
        return False

    def renew(self, owners: Sequence[str], ttl_s: float, now_s: float) -> None:
        wanted = set(owners)
        with self._lock:
            for held in self._slots.values():
                for member, (owner, _) in list(held.items()):
                    if owner in wanted:
                        held[member] = (owner, now_s + ttl_s)
            for lock, (task_id, holder, _) in list(self._unique.items()):
                if holder in wanted:
                    self._unique[lock] = (task_id, holder, now_s + ttl_s)

    def claim_unique(self, lock: str, task_id: str, ttl_s: float) -> str | None:
        now_s = time.time()
        with self._lock:
            held = self._unique.get(lock)
            if held is not None and held[2] > now_s:
                return None if held[0] == task_id else held[0]
            self._unique[lock] = (task_id, None, now_s + ttl_s)
            return None

    def hold_unique(self, lock: str, task_id: str, owner: str, ttl_s: float) -> None:
        with self._lock:
            held = self._unique.get(lock)
            if held is not None and held[0] == task_id:
                self._unique[lock] = (task_id, owner, time.time() + ttl_s)

    def release_unique(self, lock: str, task_id: str, owner: str) -> None:
        with self._lock:
            held = self._unique.get(lock)
            if held is not None and held[0] == task_id:
                del self._unique[lock]

    def parked(self, task_name: str, now_s: float) -> int:
        with self._lock:
            rated = sum(
                1 for name, at in self._reserved.values() if name == task_name and at > now_s - 1
            )
            capped = sum(
                1
                for (name, _), until in self._waiting.items()
                if name == task_name and until > now_s
            )
        return rated + capped

    def unparked(self, task_name: str, ticket: str) -> None:
        with self._lock:
            self._waiting.pop((task_name, ticket), None)
