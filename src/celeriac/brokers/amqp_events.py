"""Celery's events over AMQP: the ``celeryev`` topic exchange on RabbitMQ.

Events are published transient (``delivery_mode=1``) with their routing key
(``task.succeeded``, ``worker.heartbeat``...), as a Celery worker sends them; a reader
consumes an exclusive ``celeryev.<uuid>`` queue bound with ``#`` (messages kept 5 s, the queue
dropped 60 s after its reader left: Celery's ``event_queue_ttl`` and
``event_queue_expires``), so ``celery events``, Flower and ``celeriac events`` read the
events of either implementation.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import amqp

from ..errors import BrokerError
from . import amqp_wire

QUEUE_ARGUMENTS = {"x-message-ttl": 5_000, "x-expires": 60_000}
AMQP_ERRORS: tuple[type[Exception], ...] = (OSError, amqp.exceptions.AMQPError)


class AmqpEvents:
    """An event transport on the AMQP broker's node (its own connection)."""

    def __init__(self, broker: Any, exchange: str) -> None:
        self.broker = broker
        self.exchange = exchange
        self._lock = threading.Lock()
        self._conn: Any = None
        self._channel: Any = None

    def _open(self) -> Any:
        if self._channel is None:
            target = self.broker.target
            conn = amqp.Connection(
                target.address,
                userid=target.userid,
                password=target.password,
                virtual_host=target.virtual_host,
                ssl=target.tls,
                connect_timeout=self.broker.connect_timeout_s,
                client_properties={"connection_name": f"{self.broker.client_name} events"},
            )
            try:
                conn.connect()
            except AMQP_ERRORS as exc:
                raise self.broker.unreachable(exc) from exc
            channel = conn.channel()
            channel.exchange_declare(self.exchange, "topic", durable=True, auto_delete=False)
            self._conn, self._channel = conn, channel
        return self._channel

    def _drop(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a broken connection being dropped
                conn.collect()

    def publish(self, items: Sequence[tuple[str, bytes]]) -> None:
        with self._lock:
            try:
                channel = self._open()
                for key, raw in items:
                    body, properties = amqp_wire.to_amqp(raw)
                    properties["delivery_mode"] = 1
                    channel.basic_publish(
                        amqp.Message(body, **properties), exchange=self.exchange, routing_key=key
                    )
            except AMQP_ERRORS as exc:
                self._drop()
                raise BrokerError(
                    f"could not send events to {self.broker.target.shown}: {exc!r}"
                ) from exc

    def listen(self, timeout_s: float | None) -> Iterator[bytes | None]:
        with self._lock:
            channel = self._open()
            conn = self._conn
            queue = f"celeryev.{uuid.uuid4()}"
            channel.queue_declare(
                queue, durable=False, exclusive=True, auto_delete=True, arguments=QUEUE_ARGUMENTS
            )
            channel.queue_bind(queue, self.exchange, "#")
            arrived: list[bytes] = []

            def on_event(message: Any) -> None:
                arrived.append(
                    amqp_wire.to_envelope(
                        message.body, message.properties, message.delivery_info, ""
                    )
                )

            channel.basic_consume(queue, no_ack=True, callback=on_event)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            while deadline is None or time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=0.25)
                except TimeoutError:
                    yield None
                    continue
                while arrived:
                    yield arrived.pop(0)
        finally:
            with self._lock:
                self._drop()
