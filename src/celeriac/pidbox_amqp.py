"""Celery's remote control over AMQP (RabbitMQ): the ``celery.pidbox`` fanout exchange.

Each worker consumes ``{nodename}.celery.pidbox``, an exclusive queue bound to the fanout
``celery.pidbox`` exchange; a caller that wants answers declares ``{oid}.reply.celery.pidbox``
bound to the direct ``reply.celery.pidbox`` exchange with its oid as routing key, and the
workers publish their ``{nodename: answer}`` there with the request's ticket in the headers.
Names, exchange kinds and queue arguments are Celery's defaults (``control_queue_ttl`` 300 s,
``control_queue_expires`` 10 s), so ``celery inspect ping`` reaches a celeriac worker and
``app.control`` of celeriac reaches a Celery worker. Requests and replies are JSON only.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import amqp

from . import pidbox
from .brokers import amqp_wire
from .errors import BrokerError
from .urls import safe_url

if TYPE_CHECKING:
    from .app import Celeriac
    from .worker.control import ControlListener

logger = logging.getLogger(__name__)

QUEUE_ARGUMENTS = {"x-message-ttl": 300_000, "x-expires": 10_000}
AMQP_ERRORS: tuple[type[Exception], ...] = (OSError, amqp.exceptions.AMQPError)
LISTENER_ERRORS: tuple[type[Exception], ...] = (BrokerError, *AMQP_ERRORS)


def is_amqp(broker: Any) -> bool:
    from .brokers.amqp import AmqpBroker

    return isinstance(broker, AmqpBroker)


def _declare_exchanges(channel: Any) -> None:
    channel.exchange_declare(pidbox.EXCHANGE, "fanout", durable=False, auto_delete=False)
    channel.exchange_declare(pidbox.REPLY_EXCHANGE, "direct", durable=False, auto_delete=False)


def _message(envelope: bytes) -> Any:
    body, properties = amqp_wire.to_amqp(envelope)
    properties["delivery_mode"] = 1  # transient, as Celery sends control messages
    return amqp.Message(body, **properties)


def _as_envelope(message: Any) -> bytes:
    return amqp_wire.to_envelope(message.body, message.properties, message.delivery_info, "")


class Replier:
    """What the worker's listener hands to ``handle``: sends one reply to a caller."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel

    def send_reply(self, envelope: bytes, routing_key: str) -> None:
        self.channel.basic_publish(
            _message(envelope), exchange=pidbox.REPLY_EXCHANGE, routing_key=routing_key
        )


# the worker's side
def start_listener(listener: ControlListener) -> threading.Thread | None:
    """Listen for remote control on AMQP for *listener* (None when the broker is not AMQP)."""
    broker = listener.runtime.app.broker
    if not is_amqp(broker):
        return None
    thread = threading.Thread(
        target=_listen, args=(listener, broker), daemon=True, name="celeriac-control"
    )
    thread.start()
    return thread


def _listen(listener: ControlListener, broker: Any) -> None:
    lost = False
    while not listener._stopped:
        conn = None
        try:
            conn = broker.connect("control")
            _consume(listener, conn.channel())
            if lost:
                logger.info("remote control listener: listening again")
                lost = False
            while not listener._stopped:
                try:
                    conn.drain_events(timeout=0.5)
                except TimeoutError:
                    continue
        except LISTENER_ERRORS as exc:
            if not lost:
                logger.warning("remote control listener lost the broker: %s; retrying", exc)
            lost = True
            time.sleep(1.0)  # the broker is down: retry each second
        except Exception as exc:  # never take the worker down
            logger.warning("remote control listener: %s; retrying", exc, exc_info=True)
            time.sleep(1.0)
        finally:
            if conn is not None:
                _close(conn)


def _consume(listener: ControlListener, channel: Any) -> None:
    _declare_exchanges(channel)
    queue = f"{listener.runtime.nodename}.{pidbox.EXCHANGE}"
    channel.queue_declare(
        queue, durable=False, exclusive=True, auto_delete=True, arguments=QUEUE_ARGUMENTS
    )
    channel.queue_bind(queue, pidbox.EXCHANGE, "")
    replier = Replier(channel)

    def on_message(message: Any) -> None:
        listener.handle(_as_envelope(message), replier)

    channel.basic_consume(queue, no_ack=True, callback=on_message)
    listener._subscribed.set()


def _close(conn: Any) -> None:
    try:
        conn.close()
    except Exception:
        logger.debug("closing the control connection", exc_info=True)


# the caller's side
def broadcast(
    app: Celeriac,
    command: str,
    arguments: dict[str, Any] | None,
    destination: Sequence[str] | None,
    reply: bool,
    timeout: float,
    limit: int | None,
    callback: Callable[[dict[str, Any]], Any] | None,
) -> list[dict[str, Any]] | None:
    """Celery's ``broadcast`` on AMQP: publish to ``celery.pidbox``; with *reply*, collect
    the answers that carry this request's ticket until *timeout* or *limit*."""
    broker: Any = app.broker  # an AmqpBroker: this module serves only the amqp:// scheme
    conn = broker.connect("control client")
    try:
        channel = conn.channel()
        _declare_exchanges(channel)
        oid = str(uuid.uuid4()) if reply else None
        envelope, ticket = pidbox.request(
            command, arguments or {}, list(destination) if destination else None, oid, timeout
        )
        replies: list[dict[str, Any]] = []
        if oid is not None:
            _collect_into(channel, oid, ticket, replies, callback, command)
        channel.basic_publish(_message(envelope), exchange=pidbox.EXCHANGE, routing_key="")
        if oid is None:
            return None
        deadline = time.monotonic() + timeout
        while limit is None or len(replies) < limit:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                conn.drain_events(timeout=remaining)
            except TimeoutError:
                break
        return replies
    except AMQP_ERRORS as exc:
        raise BrokerError(
            f"remote control over RabbitMQ at {safe_url(app.broker.url)} failed: {exc!r}; "
            f"check that the broker is up and retry"
        ) from exc
    finally:
        _close(conn)


def _collect_into(
    channel: Any,
    oid: str,
    ticket: str | None,
    replies: list[dict[str, Any]],
    callback: Callable[[dict[str, Any]], Any] | None,
    command: str,
) -> None:
    queue = pidbox.reply_queue(oid)
    channel.queue_declare(
        queue, durable=False, exclusive=True, auto_delete=True, arguments=QUEUE_ARGUMENTS
    )
    channel.queue_bind(queue, pidbox.REPLY_EXCHANGE, oid)

    def on_reply(message: Any) -> None:
        try:
            body, headers = pidbox.decode(_as_envelope(message))
        except ValueError as exc:  # a pickled or malformed reply: never decoded
            logger.warning("ignoring a reply to %s: %s", command, exc)
            return
        if ticket is not None and headers.get("ticket") not in (None, ticket):
            return  # an answer to another request
        replies.append(body)
        if callback is not None:
            callback(body)

    channel.basic_consume(queue, no_ack=True, callback=on_reply)
