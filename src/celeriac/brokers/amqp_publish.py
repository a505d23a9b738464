"""Publishing to RabbitMQ: publisher confirms, and a publisher blocked by a resource alarm.

Publisher confirms are on unless ``broker_transport_options={"confirm_publish": False}``
(kombu's name; Celery leaves them off). With them on, a send returns once RabbitMQ has
taken the message (for a persistent one: written it), so a send that returned is in the
broker. With them off a send returns once the message is in the socket: faster, but a
message the broker refuses or never reads (it dies, or drops the connection) is lost in
silence.

When RabbitMQ is short of memory or disk it stops reading from publishing connections and
tells them so (``connection.blocked``, with a reason such as ``low on memory``) until the
alarm clears (``connection.unblocked``). A send waits for that up to
``broker_transport_options['confirm_timeout']`` and then raises a BrokerError saying so: a
send that raised may be sent again (at worst it is queued twice), a send that returned is in
the broker.
"""

from __future__ import annotations

import logging
import select
import time
from typing import Any, ClassVar

import amqp
from amqp import spec

from ..errors import BrokerError, ConfigurationError
from . import amqp_frames

logger = logging.getLogger(__name__)

CONFIRM_TIMEOUT_S = 30.0
WAIT_SLICE_S = 1.0  # longest single wait on the socket: the deadline is checked between


class AlarmAwareConnection(amqp.Connection):  # type: ignore[misc]
    """py-amqp's connection, keeping the reason RabbitMQ gives in ``connection.blocked``
    (py-amqp reads the method without its argument) while the connection stays blocked."""

    _METHODS: ClassVar[dict[Any, Any]] = {
        **amqp.Connection._METHODS,
        spec.Connection.Blocked: spec.method(spec.Connection.Blocked, "s"),
    }
    blocked_reason: str | None = None

    def _on_blocked(self, reason: str = "") -> None:
        self.blocked_reason = str(reason or "no reason given")
        logger.warning("RabbitMQ blocked this publisher: %s", self.blocked_reason)

    def _on_unblocked(self) -> None:
        if self.blocked_reason is not None:
            logger.warning("RabbitMQ unblocked this publisher")
        self.blocked_reason = None


def blocked_reason(conn: Any) -> str | None:
    """Why RabbitMQ blocks *conn* now (None: it does not)."""
    return getattr(conn, "blocked_reason", None)


def confirm_publish(options: dict[str, Any]) -> bool:
    """``broker_transport_options['confirm_publish']``: on unless set to false."""
    value = options.get("confirm_publish", True)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise ConfigurationError(
        f"broker_transport_options['confirm_publish'] must be True or False, not {value!r}"
    )


def confirm_timeout(options: dict[str, Any]) -> float:
    """``broker_transport_options['confirm_timeout']``: how long a send waits (seconds)."""
    value = options.get("confirm_timeout", CONFIRM_TIMEOUT_S)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds > 0:
        raise ConfigurationError(
            f"broker_transport_options['confirm_timeout'] must be a number of seconds above "
            f"0, not {value!r}"
        )
    return seconds


def alarm_error(shown: str, reason: str, waited_s: float, count: int) -> BrokerError:
    return BrokerError(
        f"RabbitMQ at {shown} is blocking publishers: it reported a resource alarm "
        f"({reason}) and did not lift it within {waited_s:.1f}s; {count} message(s) not "
        f"confirmed: send them again once the alarm clears (free memory or disk on the node, "
        f"or raise vm_memory_high_watermark / disk_free_limit; "
        f"broker_transport_options['confirm_timeout'] sets how long a send waits)"
    )


def unconfirmed_error(shown: str, waited_s: float, count: int) -> BrokerError:
    return BrokerError(
        f"RabbitMQ at {shown} did not confirm {count} message(s) within {waited_s:.1f}s; "
        f"they may or may not be queued: send them again once the broker recovers (raise "
        f"broker_transport_options['confirm_timeout'] to wait longer)"
    )


def _socket(conn: Any) -> Any:
    return getattr(getattr(conn, "transport", None), "sock", None)


def readable(conn: Any, timeout_s: float) -> bool:
    """Whether *conn* has bytes to read within *timeout_s* (True when it cannot tell: the
    read that follows reports a closed socket)."""
    sock = _socket(conn)
    if sock is None:
        return True
    pending = getattr(sock, "pending", None)  # TLS: bytes already decrypted
    if pending is not None and pending():
        return True
    try:
        ready, _, _ = select.select([sock], [], [], max(0.0, timeout_s))
    except (OSError, ValueError):
        return True
    return bool(ready)


def take_pending(conn: Any) -> None:
    """Handle what RabbitMQ already sent on *conn* (blocked, unblocked, late confirms),
    without waiting."""
    while readable(conn, 0.0):
        try:
            conn.drain_events(timeout=0.5)  # a frame begun is finished at once
        except TimeoutError:
            return


def wait_events(conn: Any, deadline: float) -> bool:
    """Handle the next frames RabbitMQ sends on *conn*, waiting no later than *deadline*
    (monotonic); False when the deadline passed first."""
    left = deadline - time.monotonic()
    if left <= 0:
        return False
    if not readable(conn, min(left, WAIT_SLICE_S)):
        return True  # nothing yet: the caller checks what it waits for and calls again
    try:
        conn.drain_events(timeout=max(0.5, min(left, WAIT_SLICE_S)))
    except TimeoutError:
        return True
    return True


def wait_unblocked(conn: Any, deadline: float, shown: str, waited_s: float, count: int) -> None:
    """Before writing: while RabbitMQ blocks *conn*, wait for it to unblock, up to
    *deadline*; then raise the alarm error (nothing of this send was written)."""
    take_pending(conn)
    while (reason := blocked_reason(conn)) is not None:
        if not wait_events(conn, deadline):
            raise alarm_error(shown, reason, waited_s, count)


FLUSH_BYTES = 1 << 20  # a batch is written in pieces of about this size


def write_publishes(conn: Any, channel: Any, routed: list[tuple[str, str, Any]]) -> None:
    """``basic.publish`` each (exchange, routing key, ``amqp.Message``) on *channel*: encoded
    here and written together, or by py-amqp for a message this encoder leaves to it."""
    if not channel.is_open or conn.transport is None:
        raise amqp.exceptions.RecoverableConnectionError("the publishing channel is closed")
    frame_max, channel_id = conn.frame_max, channel.channel_id
    pending: list[bytes] = []
    size = 0
    for exchange, routing_key, message in routed:
        body = message.body
        try:
            if not isinstance(body, bytes):
                raise amqp_frames.Unencodable("a body that is not bytes")
            frames = amqp_frames.publish(
                channel_id, exchange, routing_key, body, message.properties, frame_max
            )
        except amqp_frames.Unencodable:
            if pending:
                conn.transport.write(b"".join(pending))
                pending, size = [], 0
            channel._basic_publish(message, exchange=exchange, routing_key=routing_key)
            continue
        pending.append(frames)
        size += len(frames)
        if size >= FLUSH_BYTES:
            conn.transport.write(b"".join(pending))
            pending, size = [], 0
    if pending:
        conn.transport.write(b"".join(pending))
