"""The consumer loop, shared by every pool: fetch what the slots can start, hand it over.

It fetches only as many messages as there are free slots, so nothing waits in this process
while a slot elsewhere sits idle; every fetched message is in the broker's unacked store
until its ack, so a crash loses nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from ..brokers.base import Delivery
from ..errors import BrokerError
from ..urls import safe_url
from .execute import ExecContext, handle
from .pools.base import Slots
from .runtime import StopFlags

logger = logging.getLogger(__name__)

MAX_WAIT_S = 1.0


class Consumer:
    def __init__(
        self,
        ctx: ExecContext,
        queues: list[str],
        slots: Slots,
        stop: StopFlags,
        handler: Callable[[ExecContext, Delivery], None] = handle,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.ctx = ctx
        self.queues = list(queues)
        self.slots = slots
        self.stop = stop
        self.handler = handler
        self.should_stop = should_stop
        self.held: dict[str, Delivery] = {}
        self._held_lock = threading.Lock()
        self._next_due: float | None = 0.0
        self._next_promote = 0.0
        self._next_revoked_check = 0.0
        self._revoked_version = -1
        self.last_fetch_at = 0.0
        ctx.on_defer = self._note_due

    def _note_due(self, due_s: float) -> None:
        if self._next_due is None or due_s < self._next_due:
            self._next_due = due_s

    def run(self) -> None:
        """Consume until a warm or cold stop; in-flight jobs are the caller's to join."""
        broker = self.ctx.app.broker
        backoff_s = 0.1
        while not self.stop.stopping and not (self.should_stop and self.should_stop()):
            free = self.slots.free()
            if free <= 0:
                self.slots.wait_for_free(0.2)
                continue
            try:
                self._refresh_revoked(broker)
                timeout_s = self._promote(broker)
                deliveries = broker.fetch(self.queues, free, timeout_s)
            except BrokerError as exc:
                logger.warning("consumer: %s; retrying in %.1fs", exc, backoff_s)
                self.stop.warm.wait(backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)
                continue
            if backoff_s > 0.1:
                logger.info("consumer: connected to %s again", safe_url(broker.url))
                backoff_s = 0.1
            self.last_fetch_at = time.time()
            for delivery in deliveries:
                self._submit(delivery)
            if deliveries and len(self.queues) > 1:
                self._rotate(deliveries[0].queue)

    def _promote(self, broker: Any) -> float:
        """Queue parked ETA tasks that are due; return how long the next fetch may wait."""
        now = time.time()
        if now >= self._next_promote or (self._next_due is not None and now >= self._next_due):
            self._next_due = broker.promote_due(now)
            self._next_promote = now + MAX_WAIT_S
        wait = MAX_WAIT_S
        if self._next_due is not None:
            wait = min(wait, max(0.0, self._next_due - now))
        return wait

    def _refresh_revoked(self, broker: Any) -> None:
        """Re-read the revoked ids at most once a second, and only when they changed."""
        now = time.monotonic()
        if now < self._next_revoked_check:
            return
        self._next_revoked_check = now + MAX_WAIT_S
        version = broker.revoked_version()
        if version != self._revoked_version:
            self._revoked_version = version
            self.ctx.revoked = broker.revoked_ids()

    def _rotate(self, queue: str) -> None:
        if queue in self.queues:
            self.queues.remove(queue)
            self.queues.append(queue)

    def _submit(self, delivery: Delivery) -> None:
        with self._held_lock:
            self.held[delivery.receipt] = delivery
        self.slots.submit(partial(self._run_one, delivery))

    def _run_one(self, delivery: Delivery) -> None:
        # on a cold shutdown (a BaseException) the message stays held, so it is put back
        self.handler(self.ctx, delivery)
        with self._held_lock:
            self.held.pop(delivery.receipt, None)

    def requeue_held(self) -> int:
        """Put back what this consumer took but did not finish (shutdown)."""
        with self._held_lock:
            receipts = [r for r in self.held if r]
            self.held.clear()
        if not receipts:
            return 0
        try:
            restored = self.ctx.app.broker.requeue(receipts)
        except Exception:
            logger.exception("could not requeue %d message(s) at shutdown", len(receipts))
            return 0
        if restored:
            logger.info("restored %d unacknowledged message(s)", restored)
        return restored
