"""The AMQP 0.9.1 broker (RabbitMQ), on py-amqp: Celery's default transport.

Two connections per process, opened on first use: one publishes (publisher confirms on, so
a publish that returned is in the broker), one consumes (``basic.consume`` with a
``basic.qos`` prefetch of what the consumer asks for). A message taken stays unacked in
RabbitMQ until its ack, so when a process dies RabbitMQ hands its messages to another
consumer at once: there is no visibility timeout, no heartbeat and no sweep to wait for.

Messages are published to the default exchange with the queue's name as routing key (what
Celery does for a queue on a direct exchange); queues, their exchanges and bindings are
declared as a Celery worker declares them, so a Celery client publishing to the ``celery``
exchange reaches a celeriac worker and the other way round.

ETA and countdown tasks are held by the consumer, unacked, until due (as Celery holds them,
raising the prefetch by one for each): a crash gives them back to RabbitMQ. For a quorum
queue on a topic or fanout exchange they wait in RabbitMQ instead, in Celery 5.5's native
delayed delivery topology (amqp_delayed). On quorum queues a message returned unacked more
than ``task_max_redeliveries`` times is dead-lettered, not run again (amqp_dead).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import secrets
import select
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import amqp
import orjson

from .. import pidbox
from ..errors import BrokerError
from ..protocol import mark_redelivered
from ..queues import Queue
from . import amqp_dead, amqp_delayed, amqp_publish, amqp_wire
from .amqp_topology import QueueTypes, declare, queues_from
from .base import DeadLetter, Delivery, owner_id

if TYPE_CHECKING:
    from ..config import Settings

logger = logging.getLogger(__name__)

AMQP_ERRORS: tuple[type[BaseException], ...] = (OSError, amqp.exceptions.AMQPError)
DRAIN_SLICE_S = 0.1  # longest hold of the connection while waiting: acks from others go between
MAX_REVOKED = 50_000
T = TypeVar("T")


# revoked ids heard on the pidbox exchange, oldest first: kept per process, not per broker,
# so a prefork child forked after a revoke (the manager heard it) knows it from the start
_REVOKED: dict[str, None] = {}
_REVOKED_VERSION = [0]
_REVOKED_LOCK = threading.Lock()


# rpc:// results: the reply queue of this process's rpc backend (tasks sent from here name it
# as reply_to), and where each delivered task wants its result (reply_to, correlation_id)
_REPLY_QUEUE: list[str | None] = [None]
_REPLY_TO: dict[str, tuple[str, str]] = {}
MAX_REPLY_ADDRESSES = 10_000


def reply_queue_name() -> str:
    """This process's rpc:// reply queue (a forked child gets its own)."""
    name = _REPLY_QUEUE[0]
    if name is None:
        name = _REPLY_QUEUE[0] = str(uuid.uuid4())
    return name


def declare_reply_queue(channel: Any, name: str, expires_ms: int) -> None:
    channel.queue_declare(
        name, durable=False, auto_delete=True, arguments={"x-expires": expires_ms}
    )


def _forget_reply_queue() -> None:
    _REPLY_QUEUE[0] = None
    _REPLY_TO.clear()


os.register_at_fork(after_in_child=_forget_reply_queue)


def reply_address(task_id: str, final: bool = True) -> tuple[str | None, str | None]:
    """Where the result of *task_id* goes (its message's reply_to and correlation_id); kept
    for the task's later states (STARTED, RETRY come first) until a *final* one."""
    found = _REPLY_TO.pop(task_id, None) if final else _REPLY_TO.get(task_id)
    return found if found is not None else (None, None)


def _note_reply_address(properties: Any) -> None:
    headers = properties.get("application_headers") or {}
    task_id, reply_to = headers.get("id"), properties.get("reply_to")
    if isinstance(task_id, str) and isinstance(reply_to, str) and reply_to:
        _REPLY_TO[task_id] = (reply_to, str(properties.get("correlation_id") or task_id))
        if len(_REPLY_TO) > MAX_REPLY_ADDRESSES:
            del _REPLY_TO[next(iter(_REPLY_TO))]


class _Link:
    """One connection and one channel, used under a lock (py-amqp is not thread-safe)."""

    def __init__(self, broker: AmqpBroker, role: str) -> None:
        self.broker = broker
        self.role = role
        self.lock = threading.RLock()
        self.conn: Any = None
        self.channel: Any = None
        self.token = ""
        self.declared: set[str] = set()
        self.on_open: Callable[[Any], None] | None = None

    def open(self) -> Any:
        if self.channel is not None:
            return self.channel
        conn = self.broker.connect(self.role)
        self.conn = conn
        channel = conn.channel()
        self.token = secrets.token_hex(4)
        self.declared = set()
        if self.on_open is not None:
            self.on_open(channel)
        self.channel = channel
        return channel

    def drop(self) -> None:
        conn, self.conn, self.channel = self.conn, None, None
        if conn is not None:
            _close_quietly(conn)

    def declare(self, queue: Queue) -> None:
        if queue.name in self.declared:
            return
        try:
            declare(self.channel, queue, self.broker.queue_types.arguments(queue))
        except amqp.exceptions.PreconditionFailed as exc:
            # declared before with other arguments (by another app): use it as it is
            logger.warning(
                "queue %r exists with other arguments; using it as it is: %s", queue.name, exc
            )
            self.drop()
            self.open()
        self.declared.add(queue.name)
        if self.role == "publisher" and self.broker.delays_natively(queue):
            self.broker._declare_delayed([queue])  # a countdown for it may follow


def _close_quietly(conn: Any) -> None:
    try:
        conn.collect()  # drop the socket without a closing handshake that may hang
    except Exception:
        logger.debug("closing an AMQP connection", exc_info=True)


class AmqpBroker:
    """Celery's AMQP transport, spoken with py-amqp."""

    acks_at_once = True  # the consumer sends early acks before the task runs (see consumer)

    def __init__(self, url: str, settings: Settings, client_name: str = "celeriac") -> None:
        self.url = url
        self.client_name = client_name
        self.owner = owner_id(client_name)
        self.target = amqp_wire.parse_url(url, settings.get("broker_use_ssl"))
        options = dict(settings.get("broker_transport_options") or {})
        self.connect_timeout_s = float(settings.get("broker_connection_timeout") or 4.0)
        self.confirm_timeout_s = amqp_publish.confirm_timeout(options)
        self.confirm_publish = amqp_publish.confirm_publish(options)
        self.queues = queues_from(settings)
        rpc = str(settings.resolved("result_backend") or "").lower().startswith("rpc")
        self.rpc_expires_ms = (
            int(float(settings.get("result_expires") or 86400) * 1000) if rpc else 0
        )
        self.queue_types = QueueTypes(settings, set(self.queues.declared))
        cap = settings.get("task_max_redeliveries")
        self.max_redeliveries = None if cap is None else int(cap)  # quorum queues' cap
        self.delayed_queue_type = str(
            settings.get("broker_native_delayed_delivery_queue_type") or "quorum"
        )
        self._pub = _Link(self, "publisher")
        self._pub.on_open = self._confirms_on
        self._sub = _Link(self, "consumer")
        self._outstanding: set[int] = set()
        self._nacked = 0
        self._seq = 0
        # the consumer's side
        self._tags: dict[str, str] = {}  # queue -> consumer tag
        self._queue_of: dict[str, str] = {}  # consumer tag -> queue
        self._ready: deque[Delivery] = deque()
        self._unacked: dict[str, Delivery] = {}
        self._deferred: list[tuple[float, int, Delivery]] = []
        self._poison: list[Delivery] = []  # past task_max_redeliveries: to dead-letter
        self._order = itertools.count()
        self._prefetch = 0
        self._asked = 0

    # connections
    def connect(self, role: str) -> Any:
        """A new connection to the node (named after this client and *role*)."""
        target = self.target
        publisher = role == "publisher"
        factory = amqp_publish.AlarmAwareConnection if publisher else amqp.Connection
        conn = factory(
            target.address,
            userid=target.userid,
            password=target.password,
            virtual_host=target.virtual_host,
            ssl=target.tls,
            connect_timeout=self.connect_timeout_s,
            heartbeat=0,
            # a blocked broker stops reading: a write waits no longer than a confirm
            write_timeout=self.confirm_timeout_s if publisher else None,
            client_properties={"connection_name": f"{self.client_name} {role}"},
        )
        try:
            conn.connect()
        except AMQP_ERRORS as exc:
            _close_quietly(conn)
            raise self.unreachable(exc) from exc
        return conn

    def unreachable(self, exc: BaseException) -> BrokerError:
        return BrokerError(
            f"cannot reach the RabbitMQ broker at {self.target.shown} "
            f"({exc or type(exc).__name__}); check that RabbitMQ is running there, and "
            f"broker_url's host, port, user and vhost"
        )

    def _lost(self, link: _Link, exc: BaseException) -> BrokerError:
        if link is self._sub:
            self._forget_deliveries()
        link.drop()
        if isinstance(exc, BrokerError):
            return exc
        return BrokerError(f"lost the RabbitMQ broker at {self.target.shown}: {exc!r}")

    def _forget_deliveries(self) -> None:
        """The consumer connection is gone: RabbitMQ has put back all it held."""
        self._tags.clear()
        self._queue_of.clear()
        self._ready.clear()
        self._unacked.clear()
        self._deferred.clear()
        self._poison.clear()
        self._prefetch = 0

    def _call(self, link: _Link, action: Callable[[Any], T]) -> T:
        with link.lock:
            try:
                return action(link.open())
            except AMQP_ERRORS as exc:
                raise self._lost(link, exc) from exc

    # publishing (confirms and resource alarms: see amqp_publish)
    def publish(self, queue: str, envelope: bytes, priority: int = 0) -> None:
        self.publish_many([(queue, envelope, priority)])

    def publish_many(self, items: Sequence[tuple[str, bytes, int]]) -> None:
        if not items:
            return
        messages = [self._task_message(queue, env, priority) for queue, env, priority in items]
        with self._pub.lock:
            try:
                self._publish_confirmed(messages)
            except BrokerError:
                if amqp_publish.blocked_reason(self._pub.conn) is None:
                    self._pub.drop()  # a blocked connection is kept: what it holds goes in
                raise
            except AMQP_ERRORS as exc:  # a connection gone stale (broker restarted): once more
                self._pub.drop()
                logger.info("publisher reconnecting to %s: %r", self.target.shown, exc)
                try:
                    self._publish_confirmed(messages)
                except AMQP_ERRORS as again:
                    raise self._lost(self._pub, again) from again

    def _task_message(self, queue: str, envelope: bytes, priority: int) -> tuple[str, Any]:
        try:
            body, properties = amqp_wire.to_amqp(envelope)
        except ValueError as exc:
            raise BrokerError(f"cannot publish to {queue!r}: {exc}") from exc
        if priority:
            properties["priority"] = max(0, min(255, int(priority)))
        if self.rpc_expires_ms and properties.get("reply_to") == properties.get("correlation_id"):
            properties["reply_to"] = reply_queue_name()  # rpc://: results come back here
        return queue, amqp.Message(body, **properties)

    def send_reply(
        self, routing_key: str, body: bytes, correlation_id: str, delivery_mode: int
    ) -> None:
        """Publish an rpc:// result to a client's reply queue (declared by the client)."""
        message = amqp.Message(
            body,
            content_type="application/json",
            content_encoding="utf-8",
            correlation_id=correlation_id,
            delivery_mode=delivery_mode,
        )
        with self._pub.lock:
            try:
                self._publish_confirmed([(routing_key, message)], declare=False)
            except BrokerError:
                if amqp_publish.blocked_reason(self._pub.conn) is None:
                    self._pub.drop()
                raise
            except AMQP_ERRORS as exc:
                raise self._lost(self._pub, exc) from exc

    def _declare_for(self, messages: list[tuple[str, Any]]) -> None:
        link = self._pub
        for queue, _ in messages:
            if queue not in link.declared:  # once per connection
                link.declare(self.queues[queue])
        if self.rpc_expires_ms:
            reply_queue = reply_queue_name()
            if reply_queue not in link.declared:  # the replies must find it
                declare_reply_queue(link.channel, reply_queue, self.rpc_expires_ms)
                link.declared.add(reply_queue)

    def _publish_confirmed(self, messages: list[tuple[str, Any]], declare: bool = True) -> None:
        """Publish *messages*; with confirms on, return once RabbitMQ has taken them all.
        While RabbitMQ blocks the connection (a resource alarm) wait, up to the timeout."""
        link = self._pub
        link.open()
        if declare:
            self._declare_for(messages)
        conn, shown, timeout_s = link.conn, self.target.shown, self.confirm_timeout_s
        deadline = time.monotonic() + timeout_s
        amqp_publish.wait_unblocked(conn, deadline, shown, timeout_s, len(messages))
        routed = [(*self._route(queue, message), message) for queue, message in messages]
        try:
            if self.confirm_publish:
                self._nacked = 0
                first, self._seq = self._seq + 1, self._seq + len(routed)
                self._outstanding.update(range(first, self._seq + 1))
            amqp_publish.write_publishes(conn, link.channel, routed)
            while self._outstanding:
                if not amqp_publish.wait_events(conn, deadline):
                    self._outstanding.clear()
                    raise self._unconfirmed(conn, len(messages))
        except AMQP_ERRORS as exc:  # a write the blocked broker did not read in time
            if amqp_publish.blocked_reason(conn) is None:
                raise
            link.drop()
            raise self._unconfirmed(conn, len(messages)) from exc
        if self._nacked:
            raise BrokerError(
                f"RabbitMQ at {shown} refused {self._nacked} message(s) (nack); "
                f"none of them is queued: send them again"
            )

    def _unconfirmed(self, conn: Any, count: int) -> BrokerError:
        reason = amqp_publish.blocked_reason(conn)
        shown, waited_s = self.target.shown, self.confirm_timeout_s
        if reason is not None:
            return amqp_publish.alarm_error(shown, reason, waited_s, count)
        return amqp_publish.unconfirmed_error(shown, waited_s, count)

    def _confirms_on(self, channel: Any) -> None:
        """Publisher confirms on the publishing channel (unless confirm_publish is off): each
        publish waits for the broker's ack, so a send that returned is in the queue."""
        self._seq = 0
        self._outstanding = set()
        if not self.confirm_publish:
            return
        channel.confirm_select()
        channel.events["basic_ack"].add(self._on_confirm)
        channel.events["basic_nack"].add(self._on_nack)

    def _on_confirm(self, tag: int, multiple: bool) -> None:
        if multiple:
            if self._outstanding:
                self._outstanding.difference_update([s for s in self._outstanding if s <= tag])
        else:
            self._outstanding.discard(tag)

    def _on_nack(self, tag: int, multiple: bool) -> None:
        before = len(self._outstanding)
        self._on_confirm(tag, multiple)
        self._nacked += before - len(self._outstanding)

    def declare_queues(self, queues: Sequence[Queue]) -> None:
        """Declare *queues* with their exchanges and bindings (a worker, at start-up). With a
        quorum queue among them, as a Celery 5.5 worker: the native delayed delivery topology,
        and each queue on a topic or fanout exchange bound to it; and each quorum queue's
        dead-letter queue (where a RabbitMQ dead-letter policy may move messages)."""

        def run(channel: Any) -> None:
            quorum = []
            for queue in queues:
                self.queues.declared.setdefault(queue.name, queue)
                self._pub.declare(queue)
                if self._is_quorum(queue):
                    quorum.append(queue)
            if quorum:
                self._declare_delayed(queues)
                for queue in quorum:
                    self._pub.declare(_dead_queue(queue.name))

        self._call(self._pub, run)

    def _is_quorum(self, queue: Queue) -> bool:
        return (self.queue_types.arguments(queue) or {}).get("x-queue-type") == "quorum"

    def _declare_delayed(self, queues: Sequence[Queue]) -> None:
        """The delayed delivery topology and *queues*' bindings to it, once a connection (on
        the publisher's link, its lock held)."""
        link = self._pub
        try:
            if amqp_delayed.FIRST_EXCHANGE not in link.declared:
                amqp_delayed.declare_topology(link.channel, self.delayed_queue_type)
                link.declared.add(amqp_delayed.FIRST_EXCHANGE)
            for queue in queues:
                mark = f"{amqp_delayed.DELIVERY_EXCHANGE} {queue.name}"
                if mark not in link.declared and amqp_delayed.bindable(queue):
                    amqp_delayed.bind_queue(link.channel, queue)
                    link.declared.add(mark)
        except amqp.exceptions.PreconditionFailed as exc:
            # declared before with other arguments (broker_native_delayed_delivery_queue_type)
            logger.warning("the delayed delivery topology exists otherwise; using it: %s", exc)
            link.drop()
            link.open()
            link.declared.add(amqp_delayed.FIRST_EXCHANGE)

    def delays_natively(self, queue: Queue) -> bool:
        """Whether countdowns for *queue* wait in RabbitMQ (see amqp_delayed)."""
        return amqp_delayed.usable(queue, self.queue_types.arguments(queue))

    def _route(self, queue: str, message: Any) -> tuple[str, str]:
        """(exchange, routing key) to publish *message* for *queue* with: a task due a second
        or more from now, for a quorum queue on a topic or fanout exchange, goes into the
        delayed delivery topology (declared with the queue), as a Celery 5.5 client sends
        it; anything else straight to the queue."""
        eta = (message.properties.get("application_headers") or {}).get("eta")
        if not eta:
            return "", queue
        target = self.queues[queue]  # known: declared before publishing
        seconds = amqp_delayed.whole_seconds_until(eta)
        if seconds is None or not self.delays_natively(target):
            return "", queue
        return amqp_delayed.FIRST_EXCHANGE, amqp_delayed.routing_key(seconds, target.routing_key)

    # consuming
    def fetch(
        self, queues: Sequence[str], max_count: int, timeout_s: float, acks: Sequence[str] = ()
    ) -> list[Delivery]:
        link = self._sub
        deadline = time.monotonic() + max(0.0, timeout_s)
        with link.lock:
            try:
                self._prepare(queues, max_count, acks)
                self._drain(0.0, max_count)
            except AMQP_ERRORS as exc:
                raise self._lost(link, exc) from exc
            taken = self._take(max_count)
        while not taken:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            # wait for the socket without the lock, so acks from task threads go out now
            self._wait_readable(min(left, DRAIN_SLICE_S))
            with link.lock:
                try:
                    self._open_consumer(queues)
                    self._drain(0.0, max_count)
                except AMQP_ERRORS as exc:
                    raise self._lost(link, exc) from exc
                taken = self._take(max_count)
        return taken

    def _wait_readable(self, timeout_s: float) -> None:
        conn = self._sub.conn
        sock = getattr(getattr(conn, "transport", None), "sock", None)
        if sock is None:
            return
        pending = getattr(sock, "pending", None)  # TLS: bytes already decrypted
        if pending is not None and pending():
            return
        try:
            select.select([sock], [], [], timeout_s)
        except (OSError, ValueError):  # closed meanwhile: the drain reports it
            return

    def _open_consumer(self, queues: Sequence[str]) -> None:
        link = self._sub
        if link.channel is None:
            self._forget_deliveries()
            link.open()
            self._listen_revokes()
        self._subscribe(queues)

    def _listen_revokes(self) -> None:
        """Hear Celery's revoke broadcasts (the ``celery.pidbox`` fanout) on the consumer's
        own connection, so every consuming process (each prefork child too) drops a revoked
        message it holds or takes later, whoever sent the revoke."""
        channel = self._sub.channel
        channel.exchange_declare(pidbox.EXCHANGE, "fanout", durable=False, auto_delete=False)
        declared = channel.queue_declare("", exclusive=True, auto_delete=True)
        channel.queue_bind(declared.queue, pidbox.EXCHANGE, "")
        channel.basic_consume(declared.queue, no_ack=True, callback=self._on_control)

    def _on_control(self, message: Any) -> None:
        try:
            body, _ = pidbox.decode(amqp_wire.to_envelope(message.body, message.properties, {}, ""))
        except ValueError:
            return  # not ours to judge: the worker's control listener reports it
        if body.get("method") != "revoke":
            return
        ids = (body.get("arguments") or {}).get("task_id")
        ids = [ids] if isinstance(ids, str) else [str(i) for i in ids or []]
        if ids:
            self.add_revoked(ids, 0.0)

    def _prepare(self, queues: Sequence[str], max_count: int, acks: Sequence[str]) -> None:
        self._open_consumer(queues)
        self._ack_own(acks)
        self._asked = max(self._asked, max_count, 1)
        self._set_qos()

    def _set_qos(self) -> None:
        wanted = self._asked + len(self._deferred)
        if wanted != self._prefetch and self._sub.channel is not None:
            self._sub.channel.basic_qos(0, min(wanted, 65535), False)
            self._prefetch = wanted

    def _subscribe(self, queues: Sequence[str]) -> None:
        link = self._sub
        for queue in queues:
            if queue in self._tags:
                continue
            link.declare(self.queues[queue])
            tag = link.channel.basic_consume(queue, callback=self._on_message)
            self._tags[queue] = tag
            self._queue_of[tag] = queue
        for queue in [q for q in self._tags if q not in queues]:  # cancel_consumer
            tag = self._tags.pop(queue)
            link.channel.basic_cancel(tag)

    def _on_message(self, message: Any) -> None:
        info = message.delivery_info
        count = amqp_dead.delivery_count(message.properties)  # quorum queues count returns
        receipt = amqp_dead.receipt(self._sub.token, info["delivery_tag"], count)
        queue = self._queue_of.get(info.get("consumer_tag", ""), info.get("routing_key", ""))
        raw = amqp_wire.to_envelope(message.body, message.properties, info, receipt)
        _note_reply_address(message.properties)
        delivery = Delivery(queue, receipt, raw)
        self._unacked[receipt] = delivery
        if amqp_dead.over_cap(count, self.max_redeliveries):
            self._poison.append(delivery)
        else:
            self._ready.append(delivery)

    def _bury_poison(self) -> None:
        """Dead-letter the deliveries past task_max_redeliveries instead of running them
        again (the consumer's lock held); one that cannot be moved now is tried next fetch."""
        poison, self._poison = self._poison, []
        for delivery in poison:
            count = amqp_dead.split_receipt(delivery.receipt)[2] or 0
            reason = amqp_dead.poison_reason(delivery.queue, count, self.max_redeliveries or 0)
            task_id = DeadLetter(delivery.queue, reason, 0.0, delivery.raw).task_id
            logger.error("task %s moved to the dead-letter queue: %s", task_id, reason)
            try:
                self.dead_letter(delivery, reason)
            except BrokerError as exc:
                logger.warning("could not dead-letter task %s yet: %s", task_id, exc)
                self._poison.append(delivery)

    def _drain(self, timeout_s: float, max_count: int) -> None:
        self._drain_arrived(timeout_s, max_count)
        if self._poison:
            self._bury_poison()

    def _drain_arrived(self, timeout_s: float, max_count: int) -> None:
        conn = self._sub.conn
        try:
            conn.drain_events(timeout=timeout_s)
        except TimeoutError:
            return
        while len(self._ready) < max_count:  # what already arrived, without waiting
            try:
                conn.drain_events(timeout=0)
            except TimeoutError:
                return

    def _take(self, max_count: int) -> list[Delivery]:
        taken: list[Delivery] = []
        while self._ready and len(taken) < max_count:
            taken.append(self._ready.popleft())
        return taken

    def _own_tag(self, receipt: str) -> int | None:
        token, tag, _ = amqp_dead.split_receipt(receipt)
        if token != self._sub.token or not tag.isdigit() or self._sub.channel is None:
            return None  # another process's, or of a connection gone (RabbitMQ put it back)
        return int(tag)

    def _ack_own(self, receipts: Sequence[str]) -> int:
        done = 0
        for receipt in receipts:
            tag = self._own_tag(receipt)
            if tag is not None and self._unacked.pop(receipt, None) is not None:
                self._sub.channel.basic_ack(tag)
                done += 1
        return done

    def ack(self, receipts: Sequence[str]) -> None:
        if not receipts:
            return
        with self._sub.lock:
            if self._sub.channel is None:
                return  # the connection is gone: RabbitMQ redelivers them
            try:
                self._ack_own(receipts)
            except AMQP_ERRORS as exc:
                raise self._lost(self._sub, exc) from exc

    def requeue(self, receipts: Sequence[str], *, to_front: bool = True) -> int:
        with self._sub.lock:
            try:
                return self._requeue_locked(receipts, to_front)
            except AMQP_ERRORS as exc:
                raise self._lost(self._sub, exc) from exc

    def _requeue_locked(self, receipts: Sequence[str], to_front: bool) -> int:
        count = 0
        wanted = set(receipts)
        self._ready = deque(d for d in self._ready if d.receipt not in wanted)
        if any(item[2].receipt in wanted for item in self._deferred):
            self._deferred = [item for item in self._deferred if item[2].receipt not in wanted]
            heapq.heapify(self._deferred)
        for receipt in receipts:
            tag = self._own_tag(receipt)
            delivery = self._unacked.pop(receipt, None)
            if tag is None or delivery is None:
                continue
            if to_front:
                self._sub.channel.basic_reject(tag, True)
            else:  # to the back: a copy at the tail, then the original goes
                self.publish(delivery.queue, mark_redelivered(delivery.raw))
                self._sub.channel.basic_ack(tag)
            count += 1
        self._set_qos()
        return count

    def restore_lost(
        self, receipts: Sequence[str], max_losses: int, owner: str | None = None
    ) -> tuple[int, int]:
        """A dead process's messages: RabbitMQ gave them back when its connection closed.
        On a quorum queue a message back more than *max_losses* times counts as dead, as on
        Redis (the consumer that takes it next dead-letters it: see amqp_dead)."""
        restored = dead = 0
        own = []
        for receipt in receipts:
            count = amqp_dead.split_receipt(receipt)[2]
            over = amqp_dead.over_cap(count, max_losses - 1)  # this loss is one too many
            delivery = self._unacked.get(receipt)
            if self._own_tag(receipt) is None:
                dead, restored = (dead + 1, restored) if over else (dead, restored + 1)
            elif over and delivery is not None:
                reason = amqp_dead.poison_reason(delivery.queue, (count or 0) + 1, max_losses)
                self.dead_letter(delivery, reason)
                dead += 1
            else:
                own.append(receipt)
        return restored + (self.requeue(own) if own else 0), dead

    # liveness: RabbitMQ knows when a consumer's connection closes, and puts back what it held
    def heartbeat(
        self, owners: Sequence[str], started: Mapping[str, Collection[str]] | None = None
    ) -> None:
        return None

    def retire(self, owner: str | None = None) -> None:
        return None

    def recover_owner(self, owner: str, max_losses: int | None) -> tuple[int, int]:
        return 0, 0

    def silent_owners(self, silent_for_s: float) -> list[str]:
        return []

    def recover(
        self, dead_after_s: float, visibility_timeout_s: float | None, max_losses: int
    ) -> tuple[int, int]:
        return 0, 0

    # ETA: held here unacked until due
    def defer(self, delivery: Delivery, due_s: float) -> None:
        with self._sub.lock:
            if delivery.receipt not in self._unacked:
                return  # of a connection gone: RabbitMQ redelivers it
            heapq.heappush(self._deferred, (due_s, next(self._order), delivery))
            try:
                self._set_qos()  # Celery's way: one more in flight for each held ETA task
            except AMQP_ERRORS as exc:
                raise self._lost(self._sub, exc) from exc

    def promote_due(self, now_s: float, limit: int = 1000) -> float | None:
        with self._sub.lock:
            due: list[Delivery] = []
            while self._deferred and self._deferred[0][0] <= now_s and len(due) < limit:
                due.append(heapq.heappop(self._deferred)[2])
            self._ready.extendleft(reversed(due))
            return self._deferred[0][0] if self._deferred else None

    # dead letters: a queue per queue, named as the Redis lists are
    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        record = orjson.dumps(
            {
                "queue": delivery.queue,
                "reason": reason,
                "time": time.time(),
                "message": delivery.raw.decode("utf-8", "replace"),
            }
        )
        dead = _dead_queue(delivery.queue)
        self.queues.declared.setdefault(dead.name, dead)
        self._publish_raw(dead.name, record)
        if delivery.receipt:
            self.ack([delivery.receipt])

    def _publish_raw(self, queue: str, body: bytes) -> None:
        message = amqp.Message(body, content_type="application/json", delivery_mode=2)
        with self._pub.lock:
            try:
                self._publish_confirmed([(queue, message)])
            except AMQP_ERRORS as exc:
                raise self._lost(self._pub, exc) from exc

    def _dead_messages(self, channel: Any, queue: str) -> list[Any]:
        found: list[Any] = []
        while True:
            message = channel.basic_get(amqp_wire.DEAD_PREFIX + queue, no_ack=False)
            if message is None:
                return found
            found.append(message)

    def _with_dead(self, queue: str, action: Callable[[Any, list[Any]], T]) -> T | None:
        """Run *action* on a channel of its own holding every dead letter of *queue*; what it
        does not ack goes back when the channel closes."""

        def run(_: Any) -> T | None:
            channel = self._pub.conn.channel()
            try:
                try:
                    messages = self._dead_messages(channel, queue)
                except amqp.exceptions.NotFound:
                    return None
                return action(channel, messages)
            finally:
                if channel.is_open:
                    channel.close()

        return self._call(self._pub, run)

    def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        def read(channel: Any, messages: list[Any]) -> list[DeadLetter]:
            letters = [amqp_dead.read(queue, m.body, m.properties) for m in reversed(messages)]
            return letters[:limit]

        return self._with_dead(queue, read) or []

    def dead_letter_count(self, queue: str) -> int:
        return self._count(amqp_wire.DEAD_PREFIX + queue)

    def requeue_dead(self, queue: str, task_id: str | None = None) -> int:
        def move(channel: Any, messages: list[Any]) -> int:
            chosen = [
                (m, letter)
                for m in messages
                for letter in [amqp_dead.read(queue, m.body, m.properties)]
                if task_id is None or letter.task_id == task_id
            ]
            if chosen:  # back as new messages: RabbitMQ's count and death headers left out
                back = [amqp_dead.without_broker_headers(letter.raw) for _, letter in chosen]
                self._publish_confirmed([(queue, _message(raw)) for raw in back])
            for message, _ in chosen:
                channel.basic_ack(message.delivery_tag)
            return len(chosen)

        return self._with_dead(queue, move) or 0

    def purge_dead(self, queue: str) -> int:
        return self.purge([amqp_wire.DEAD_PREFIX + queue])

    # queues
    def _count(self, queue: str) -> int:
        def run(_: Any) -> int:
            channel = self._pub.conn.channel()
            try:
                return int(channel.queue_declare(queue, passive=True).message_count)
            except amqp.exceptions.NotFound:
                return 0
            finally:
                if channel.is_open:
                    channel.close()

        return self._call(self._pub, run)

    def queue_length(self, queue: str) -> int:
        return self._count(queue)

    def purge(self, queues: Sequence[str]) -> int:
        def run(_: Any) -> int:
            removed = 0
            for queue in queues:
                channel = self._pub.conn.channel()
                try:
                    removed += int(channel.queue_purge(queue) or 0)
                except amqp.exceptions.NotFound:
                    continue
                finally:
                    if channel.is_open:
                        channel.close()
            return removed

        return self._call(self._pub, run)

    # revoked ids: what this process heard broadcast (a worker started later does not know
    # of earlier revokes, as with Celery without a state db)
    def add_revoked(self, task_ids: Sequence[str], ttl_s: float) -> None:
        with _REVOKED_LOCK:
            for task_id in task_ids:
                _REVOKED[task_id] = None
            while len(_REVOKED) > MAX_REVOKED:  # Celery keeps the newest 50,000 too
                del _REVOKED[next(iter(_REVOKED))]
            _REVOKED_VERSION[0] += 1

    def revoked_version(self) -> int:
        return _REVOKED_VERSION[0]

    def revoked_ids(self) -> set[str]:
        with _REVOKED_LOCK:
            return set(_REVOKED)

    def ping(self) -> None:
        self._call(self._pub, lambda channel: None)

    def close(self) -> None:
        for link in (self._sub, self._pub):
            with link.lock:
                if link.conn is not None:
                    try:
                        link.conn.close()
                    except Exception:
                        logger.debug("closing the AMQP %s", link.role, exc_info=True)
                    link.conn = link.channel = None
        self._forget_deliveries()


def _message(envelope: bytes) -> Any:
    body, properties = amqp_wire.to_amqp(envelope)
    return amqp.Message(body, **properties)


def _dead_queue(queue: str) -> Queue:
    """The dead-letter queue of *queue* (a classic queue on the default exchange)."""
    return Queue(amqp_wire.DEAD_PREFIX + queue, exchange="", routing_key="")
