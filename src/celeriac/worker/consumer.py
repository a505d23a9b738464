"""The consumer loop, shared by every pool: fetch what the slots can start, hand it over.

Every fetched message sits in the broker's unacked store, owned by this process, until its
ack, so a crash loses nothing. The consumer holds at most ``prefetch_target()`` messages
(running plus waiting here): Celery's ``concurrency × worker_prefetch_multiplier``. A prefork
child holds more than the one it runs only while no sibling is waiting for work, and hands
the rest back as soon as one is. Acks are deferred and ride along with the next fetch, so a
busy worker pays one round trip per batch, not two per task.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from ..brokers.base import Delivery
from ..errors import BrokerError
from ..metrics import progress
from ..urls import safe_url
from .execute import ExecContext, handle
from .pools.base import Slots
from .prefetch import PrefetchWindow
from .runtime import StopFlags

logger = logging.getLogger(__name__)

MAX_WAIT_S = 0.5  # longest idle wait between checks: bounds shutdown and ETA latency
MAX_PENDING_ACKS = 256


class Consumer:
    def __init__(
        self,
        ctx: ExecContext,
        queues: list[str],
        slots: Slots,
        stop: StopFlags,
        handler: Callable[[ExecContext, Delivery], None] = handle,
        should_stop: Callable[[], bool] | None = None,
        prefetch_target: Callable[[], int] | None = None,
        should_hand_back: Callable[[], bool] | None = None,
        on_waiting: Callable[[bool], None] | None = None,
        prefetch_window_s: float = 0.0,
        queue_source: Any = None,
    ) -> None:
        self.ctx = ctx
        self.queues = list(queues)
        # add_consumer/cancel_consumer: a ConsumedQueues whose version moves on a change
        self.queue_source = queue_source
        # -1: the first fetch applies what changed before this consumer began (a child forked
        # after a rate_limit command, to replace one or to grow the pool, must follow it too)
        self._queues_version = -1
        self.slots = slots
        self.stop = stop
        self.handler = handler
        self.should_stop = should_stop
        self.held: dict[str, Delivery] = {}
        self._held_lock = threading.Lock()
        self.buffer: deque[Delivery] = deque()
        self._handed_back: set[str] = set()  # put back at a warm stop: never held again
        # held by the consumer's thread except while it runs a task itself (inline slots):
        # a warm stop's hand-back from another thread waits for such a moment
        self._gate = threading.Lock()
        self._inline = bool(getattr(slots, "inline", False))
        self.prefetch_target = prefetch_target or (lambda: slots.capacity)
        self.should_hand_back = should_hand_back
        self.on_waiting = on_waiting
        self.window = PrefetchWindow(prefetch_window_s)
        self._pending_acks: list[str] = []
        self._acks_lock = threading.Lock()
        # AMQP: an early ack goes out at once (a frame, no round trip), since no other
        # process can ack this connection's deliveries once this one has died
        broker = ctx.app.broker
        ctx.ack = broker.ack if getattr(broker, "acks_at_once", False) else self._ack_later
        ctx.late_ack = self._ack_after_result
        ctx.consumer = self  # the sender of task_received and friends, as in Celery
        self._late_acks = False  # a pending ack waits for a deferred result: confirm first
        self._next_due: float | None = 0.0
        self._next_promote = 0.0
        self._next_revoked_check = 0.0
        self._revoked_version = -1
        self.last_fetch_at = 0.0
        # one-at-a-time consumers (solo, a prefork child) on Redis send the next fetch before
        # running the last held task and read it after, so Redis works while the task runs,
        # and wait for work in a blocking move that brings the message with the wake-up
        self._can_fetch_ahead = bool(getattr(slots, "inline", False)) and hasattr(
            ctx.app.broker, "fetch_ahead"
        )
        self._ahead: tuple[list[str], int] | None = None  # acks it carries, count asked
        self._last_fetch_full = False
        ctx.on_defer = self._note_due
        # /readyz (--metrics-port): the loop's pulse; None otherwise, one test per loop
        self._pulse = progress.for_this_process(ctx.place_base.get("child_index"))

    @property
    def app(self) -> Any:
        return self.ctx.app

    @property
    def hostname(self) -> str:
        return self.ctx.nodename

    def _note_due(self, due_s: float) -> None:
        if self._next_due is None or due_s < self._next_due:
            self._next_due = due_s

    def _ack_later(self, receipts: Sequence[str]) -> None:
        with self._acks_lock:
            self._pending_acks.extend(r for r in receipts if r)
            flush_now = len(self._pending_acks) >= MAX_PENDING_ACKS
        if flush_now:
            try:
                self.flush_acks()
            except BrokerError as exc:  # kept pending; the next fetch carries them
                logger.warning("could not send acks now: %s", exc)

    def _ack_after_result(self, receipts: Sequence[str]) -> None:
        self._late_acks = True
        self._ack_later(receipts)

    def _take_acks(self) -> list[str]:
        with self._acks_lock:
            acks, self._pending_acks = self._pending_acks, []
        return acks

    def confirm_stores(self) -> None:
        """Read the answers to results sent without waiting, before a late ack goes out.
        (An early ack went out before its task ran: it does not wait for the result.)"""
        self._late_acks = False
        if not self.ctx.defer_stores:
            return
        try:
            backend: Any = self.ctx.app.backend  # one with store_deferred: see serve.py
            backend.confirm_stored()
        except Exception as exc:  # as for a store that fails outright: logged, not fatal
            logger.error("storing results: %s", exc)

    def flush_acks(self) -> None:
        self.confirm_stores()
        acks = self._take_acks()
        if acks:
            try:
                self.ctx.app.broker.ack(acks)
            except BrokerError:
                with self._acks_lock:  # keep them: the next fetch carries them
                    self._pending_acks[:0] = acks
                raise

    def run(self) -> None:
        """Consume until a warm or cold stop; in-flight jobs are the caller's to join."""
        with self._gate:
            self._run()

    def _run(self) -> None:
        broker = self.ctx.app.broker
        backoff_s = 0.1
        try:
            while not self.stop.stopping and not (self.should_stop and self.should_stop()):
                if self._pulse is not None:
                    self._pulse.beat()
                try:
                    if self._start_buffered():
                        continue
                    if self.slots.free() <= 0:
                        self.flush_acks()  # a long task must not keep finished ones unacked
                        self.slots.wait_for_free(0.2)
                        continue
                    self._fetch(broker)
                except BrokerError as exc:
                    if self._pulse is not None:
                        self._pulse.failing(True)
                    logger.warning("consumer: %s; retrying in %.1fs", exc, backoff_s)
                    self.stop.warm.wait(backoff_s)
                    backoff_s = min(backoff_s * 2, 5.0)
                    continue
                if backoff_s > 0.1:
                    logger.info("consumer: connected to %s again", safe_url(broker.url))
                    backoff_s = 0.1
                    if self._pulse is not None:
                        self._pulse.failing(False)
        finally:
            if self._pulse is not None:
                self._pulse.leave()
            try:
                self._take_ahead(self.ctx.app.broker)  # held, so put back at shutdown
                self.flush_acks()
            except BrokerError as exc:
                logger.warning(
                    "could not send %d pending ack(s): %s; they will be redelivered",
                    len(self._pending_acks),
                    exc,
                )

    def _start_buffered(self) -> bool:
        """Start the next held message if a slot is free, handing the others back if a
        sibling is waiting for work. True when it started one."""
        if not self.buffer or self.slots.free() <= 0:
            return False
        self._refresh_revoked(self.ctx.app.broker)  # at most once a second
        with self._held_lock:  # hand_back_unstarted may empty it from another thread
            if not self.buffer or self.stop.stopping:
                return False
            delivery = self.buffer.popleft()
        if self.buffer and self.should_hand_back is not None and self.should_hand_back():
            self._hand_back()  # the rest; this free slot keeps the one it starts now
        if not self.buffer and self._can_fetch_ahead and self._last_fetch_full:
            try:
                self._fetch_ahead(self.ctx.app.broker)
            except BrokerError as exc:  # only a head start: the task runs, the fetch waits
                logger.debug("no fetch ahead: %s", exc)
        self.slots.submit(partial(self._run_one, delivery))
        return True

    def _fetch_ahead(self, broker: Any) -> None:
        """Ask for the next batch now; the answer is read once this task is done. Only while
        the queue kept up with the last fetch, and only what the prefetch rules allow on top
        of the task about to run."""
        if self._ahead is not None or self.stop.stopping:
            return
        if self.should_hand_back is not None and self.should_hand_back():
            return
        with self._held_lock:
            holding = len(self.held)
        want = self.window.target(self.prefetch_target()) - holding
        if want <= 0:
            return
        self._refresh_revoked(broker)
        self._promote(broker)
        if self._late_acks:
            self.confirm_stores()
        acks = self._take_acks()
        sent = False
        try:
            sent = broker.fetch_ahead(self.queues, want, acks)
        finally:
            if sent:
                self._ahead = (acks, want)
            else:  # not sent: the next fetch carries them
                with self._acks_lock:
                    self._pending_acks[:0] = acks
        self.confirm_stores()

    def _take_ahead(self, broker: Any) -> list[Delivery] | None:
        """The answer of a fetch sent ahead (None when none was sent), now held."""
        if self._ahead is None:
            return None
        acks, want = self._ahead
        self._ahead = None
        try:
            deliveries: list[Delivery] = broker.take_ahead()
        except BrokerError:
            with self._acks_lock:  # maybe not applied: the next fetch sends them again
                self._pending_acks[:0] = acks
            raise
        self._last_fetch_full = len(deliveries) >= want
        self._hold(deliveries)
        return deliveries

    def _hand_back(self) -> None:
        receipts = [d.receipt for d in self.buffer if d.receipt]
        if not receipts:
            return
        try:
            self.ctx.app.broker.requeue(receipts)
        except BrokerError as exc:  # still held here (and in Redis): run them instead
            logger.debug("could not hand messages back: %s", exc)
            return
        self.buffer.clear()
        with self._held_lock:
            for receipt in receipts:
                self.held.pop(receipt, None)
        logger.debug("handed %d message(s) back for an idle sibling", len(receipts))

    def _follow_queues(self) -> bool:
        """Follow what remote control changed (add_consumer/cancel_consumer's queues,
        rate_limit/time_limit's task settings); False while there is no queue to consume
        (the loop waits then)."""
        source = self.queue_source
        if source is not None and source.version != self._queues_version:
            self._queues_version = source.version
            queues = source.follow(self.ctx.app)
            if queues != self.queues:
                self.queues = queues
                logger.info("consuming from: %s", ", ".join(self.queues) or "no queue")
        if not self.queues:
            self.stop.warm.wait(MAX_WAIT_S)
            return False
        return True

    def _fetch(self, broker: Any) -> None:
        if not self._follow_queues():
            return
        now = time.monotonic()
        ahead = self._take_ahead(broker)
        if ahead:
            # the batch before ran until now: its pace counts up to here
            self.window.fetched(len(ahead), now, time.monotonic())
            self.last_fetch_at = time.time()
            return
        with self._held_lock:
            holding = len(self.held)
        want = max(self.slots.free(), self.window.target(self.prefetch_target()) - holding)
        started = time.monotonic()
        self._refresh_revoked(broker)
        timeout_s = self._promote(broker)
        if self._late_acks:
            self.confirm_stores()
        acks = self._take_acks()
        try:
            deliveries: list[Delivery] = []
            if not (self._can_fetch_ahead and not self._last_fetch_full and timeout_s > 0):
                deliveries = broker.fetch(self.queues, want, 0, acks=acks)
                acks = []  # applied
                self.confirm_stores()  # read while the worker has nothing to run
            if not deliveries and timeout_s > 0:
                # nothing ready (or the last fetch drained the queue): only now is this
                # consumer idle and asking for work
                if self.on_waiting is not None:
                    self.on_waiting(True)
                if self._can_fetch_ahead:
                    # Redis: acks, the take and the wait in one round trip, and the wake-up
                    # brings the message
                    deliveries = broker.wait_and_take(
                        self.queues, want, timeout_s, acks=acks, meanwhile=self.confirm_stores
                    )
                else:
                    deliveries = broker.fetch(self.queues, want, timeout_s)
        except BrokerError:
            with self._acks_lock:  # not applied: send them with the next fetch
                self._pending_acks[:0] = acks
            raise
        if deliveries:
            self.window.fetched(len(deliveries), started, time.monotonic())
        else:
            self.window.idle()
        if deliveries and self.on_waiting is not None:
            self.on_waiting(False)
        self.last_fetch_at = time.time()
        self._last_fetch_full = len(deliveries) >= want
        self._hold(deliveries)

    def _hold(self, deliveries: list[Delivery]) -> None:
        with self._held_lock:
            if self._handed_back:  # a fetch answered after the warm stop handed them back
                deliveries = [d for d in deliveries if d.receipt not in self._handed_back]
            for delivery in deliveries:
                self.held[delivery.receipt] = delivery
            self.buffer.extend(deliveries)
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

    def _run_one(self, delivery: Delivery) -> None:
        # on a cold shutdown (a BaseException) the message stays held, so it is put back
        if self._inline:  # this is the consumer's thread: a warm stop may hand back now
            self._gate.release()
            if self._pulse is not None:
                self._pulse.busy(True)
            try:
                self.handler(self.ctx, delivery)
            finally:
                if self._pulse is not None:
                    self._pulse.busy(False)
                self._gate.acquire()
        else:
            self.handler(self.ctx, delivery)
        with self._held_lock:
            self.held.pop(delivery.receipt, None)

    def started_receipts(self) -> list[str]:
        """What this consumer holds and has handed to its slots (running or finished and
        not yet acked); the rest of what it holds is waiting in its buffer."""
        with self._held_lock:
            waiting = {delivery.receipt for delivery in self.buffer}
            return [receipt for receipt in self.held if receipt not in waiting]

    def hand_back_unstarted(self) -> int:
        """At a warm stop: put back at once every message held but not started, while the
        running ones finish. Any thread may call it: it waits until the consumer's own
        thread is inside a task or done (``_gate``), so no fetch or ack is half-way. On
        Redis a batch fetched ahead, whose answer is not read yet, goes back too (it is
        dropped when read)."""
        broker = self.ctx.app.broker
        with self._gate:
            with self._held_lock:
                waiting = [d for d in self.buffer if d.receipt]
                self.buffer.clear()
                for delivery in waiting:
                    self.held.pop(delivery.receipt, None)
                keep = set(self.held)  # running
            with self._acks_lock:
                keep.update(self._pending_acks)  # finished: their acks are on their way
            receipts = [d.receipt for d in waiting]
            try:
                if self._ahead is not None and hasattr(broker, "requeue_owned"):
                    keep.update(self._ahead[0])  # acks that the fetch sent ahead carries
                    back = list(broker.requeue_owned(keep))
                else:
                    back = receipts
                    if receipts:
                        broker.requeue(receipts)
            except Exception as exc:  # still held: settle() puts them back at the end
                with self._held_lock:
                    for delivery in waiting:
                        self.held[delivery.receipt] = delivery
                logger.warning("could not hand back the unstarted messages now: %s", exc)
                return 0
            with self._held_lock:
                self._handed_back.update(back)
        if back:
            logger.info("warm shutdown: put %d unstarted message(s) back at once", len(back))
        return len(back)

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
