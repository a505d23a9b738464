"""Dead letters on RabbitMQ, and the redelivery cap of quorum queues.

A quorum queue counts how often a message went back to it unacked (its consumer died, or
gave it back) and hands the count over as the ``x-delivery-count`` header. A delivery whose
count is past ``task_max_redeliveries`` is not run again: the consumer moves it to the
queue's dead-letter queue (``celeriac.dead.<queue>``), where ``celeriac dead`` finds it.
The count rides in the delivery's receipt too, so a prefork manager whose child died
holding the message knows, as on Redis, that this death was one too many and stores the
failure.

A dead-letter queue holds celeriac's JSON records (reason, time, message) and, when a
RabbitMQ policy dead-letters into it (``dead-letter-routing-key: celeriac.dead.<queue>``),
messages RabbitMQ moved there itself, whose ``x-death`` header gives the reason. Both read
as dead letters and go back to their queue the same way.
"""

from __future__ import annotations

import datetime
from typing import Any

import orjson

from . import amqp_wire
from .base import DeadLetter

COUNT_HEADER = "x-delivery-count"
# headers RabbitMQ adds when it dead-letters or redelivers: a message put back starts afresh
BROKER_HEADERS = frozenset(
    {
        COUNT_HEADER,
        "x-death",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-first-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
        "x-last-death-exchange",
    }
)


def delivery_count(properties: Any) -> int | None:
    """How often a quorum queue's message went back to it before this delivery (None for a
    classic queue's message, which carries no count)."""
    value = (properties.get("application_headers") or {}).get(COUNT_HEADER)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return max(0, value)


def receipt(token: str, tag: int, count: int | None) -> str:
    """``token:tag``, or ``token:tag:count`` for a quorum queue's delivery."""
    return f"{token}:{tag}" if count is None else f"{token}:{tag}:{count}"


def split_receipt(text: str) -> tuple[str, str, int | None]:
    """(connection token, delivery tag, delivery count or None) of a receipt."""
    token, _, rest = text.partition(":")
    tag, _, count = rest.partition(":")
    return token, tag, int(count) if count.isdigit() else None


def over_cap(count: int | None, cap: int | None) -> bool:
    return count is not None and cap is not None and count > cap


def poison_reason(queue: str, count: int, cap: int) -> str:
    return (
        f"its worker died {count} times while holding it (quorum queue {queue!r} returned "
        f"it unacked {count} times, x-delivery-count; task_max_redeliveries={cap})"
    )


def without_broker_headers(envelope: bytes) -> bytes:
    """The envelope without RabbitMQ's count and death headers (what goes back to the
    queue); unreadable envelopes as they are, for the publisher to report."""
    try:
        parsed = orjson.loads(envelope)
    except orjson.JSONDecodeError:
        return envelope
    headers = parsed.get("headers") if isinstance(parsed, dict) else None
    if not isinstance(headers, dict) or not BROKER_HEADERS & headers.keys():
        return envelope
    parsed["headers"] = {k: v for k, v in headers.items() if k not in BROKER_HEADERS}
    return orjson.dumps(parsed)


def read(queue: str, body: Any, properties: Any) -> DeadLetter:
    """One message of a dead-letter queue as a dead letter."""
    headers = properties.get("application_headers") or {}
    if "x-death" in headers or "x-first-death-reason" in headers:
        return _moved_by_rabbitmq(queue, body, properties, headers)
    raw = amqp_wire.body_text(body)
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        record = None
    if not isinstance(record, dict):
        return DeadLetter(queue, "unreadable dead-letter record", 0.0, raw)
    message = record.get("message", "")
    return DeadLetter(
        queue,
        str(record.get("reason", "")),
        float(record.get("time") or 0.0),
        message.encode("utf-8") if isinstance(message, str) else raw,
    )


def _moved_by_rabbitmq(
    queue: str, body: Any, properties: Any, headers: dict[str, Any]
) -> DeadLetter:
    deaths = headers.get("x-death")
    first = deaths[0] if isinstance(deaths, list) and deaths else {}
    first = first if isinstance(first, dict) else {}
    why = _text(first.get("reason") or headers.get("x-first-death-reason") or "unknown")
    source = _text(first.get("queue") or headers.get("x-first-death-queue") or queue)
    reason = f"RabbitMQ dead-lettered it from {source!r}: {why}"
    if why == "delivery_limit":
        reason += " (x-delivery-limit reached: its consumers died or gave it back too often)"
    when = first.get("time")
    at = 0.0
    if isinstance(when, datetime.datetime):
        at = (when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)).timestamp()
    kept = dict(properties)
    kept["application_headers"] = {k: v for k, v in headers.items() if k not in BROKER_HEADERS}
    raw = amqp_wire.to_envelope(body, kept, {}, "")
    return DeadLetter(queue, reason, at, raw)


def _text(value: Any) -> str:
    return bytes(value).decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
