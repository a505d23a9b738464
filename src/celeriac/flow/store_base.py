"""The flow store interface: buckets, slot leases and unique locks kept where every worker
sharing the broker sees them, each taken atomically (one Lua script or one transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..brokers.base import Delivery

# how long a cap-parked task waits when no release wakes it (a holder died, or a release
# came between its park and its wait being recorded): the lease lapses within that time
CAP_RECHECK_S = 2.0


class FlowStore(Protocol):
    def take(
        self,
        bucket: str,
        ticket: str,
        task_name: str,
        interval_s: float,
        now_s: float,
        horizon_s: float | None = None,
    ) -> float:
        """0.0 when *ticket* may run now, else the time its reserved token comes. A ticket
        that holds a reservation is answered from it, so a parked task never pays twice.
        With *horizon_s*, a token further ahead than that is not reserved: the answer is
        minus the time the bucket has room again (a worker's bucket takes no more than a
        prefetch's worth, so the rest stay for the other workers, as in Celery)."""
        ...

    def acquire(
        self, slots: str, member: str, owner: str, limit: int, ttl_s: float, now_s: float
    ) -> bool:
        """Take one of *limit* slots as a lease of *ttl_s* held by *owner*."""
        ...

    def wait_for_slot(
        self, slots: str, limit: int, delivery: Delivery, task_name: str, ticket: str, now_s: float
    ) -> None:
        """After *delivery* was parked: queue it for the next release, or wake it at once
        if a slot came free meanwhile (so no wake-up is lost)."""
        ...

    def release(self, slots: str, member: str, owner: str, now_s: float) -> bool:
        """Give the slot back and wake the first waiter; True when one was woken."""
        ...

    def renew(self, owners: Sequence[str], ttl_s: float, now_s: float) -> None:
        """Extend every lease and running unique lock that *owners* hold."""
        ...

    def claim_unique(self, lock: str, task_id: str, ttl_s: float) -> str | None:
        """Take *lock* for *task_id*; the id of the task that holds it otherwise."""
        ...

    def hold_unique(self, lock: str, task_id: str, owner: str, ttl_s: float) -> None:
        """The task runs now: its lock lives while *owner* beats (and no longer)."""
        ...

    def release_unique(self, lock: str, task_id: str, owner: str) -> None: ...

    def parked(self, task_name: str, now_s: float) -> int:
        """How many tasks of *task_name* are parked by flow control now."""
        ...

    def unparked(self, task_name: str, ticket: str) -> None: ...
