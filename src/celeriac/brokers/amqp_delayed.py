"""Countdown and ETA on RabbitMQ quorum queues: Celery 5.5's native delayed delivery.

A task due later waits in RabbitMQ, not in a worker. The delay, in whole seconds, is
written as 28 binary digits in front of the queue's routing key (``0.0.…1.0.1.celery``) and
the message is published to the ``celery_delayed_27`` topic exchange. Each level N has a
topic exchange and a queue ``celery_delayed_N`` whose messages live 2**N seconds and are then
dead-lettered to level N-1: a message whose digit N is 1 waits in that queue, one whose
digit is 0 is passed down to the next exchange at once. After level 0 it reaches the
``celery_delayed_delivery`` exchange, to which each queue's own exchange is bound with
``#.<routing key>``, and so the queue. The names and arguments are Celery's, so Celery
clients and workers and celeriac ones share one topology.

As with Celery, only queues on a topic or fanout exchange can use it (a direct exchange
cannot match the prefixed key); other countdowns are held by the worker until due.
"""

from __future__ import annotations

import datetime
from typing import Any

from ..queues import Queue

LEVELS = 28  # delays up to 2**28 - 1 seconds (about 8.5 years)
FIRST_EXCHANGE = f"celery_delayed_{LEVELS - 1}"
DELIVERY_EXCHANGE = "celery_delayed_delivery"
QUEUE_TYPES = ("quorum", "classic")


def level_name(level: int) -> str:
    return f"celery_delayed_{level}"


def level_arguments(level: int, queue_type: str) -> dict[str, Any]:
    """The arguments of the queue of *level*, as a Celery 5.5 worker declares them (a
    different set would make one side's declaration fail)."""
    arguments: dict[str, Any] = {
        "x-queue-type": queue_type,
        "x-overflow": "reject-publish",
        "x-message-ttl": (2**level) * 1000,
        "x-dead-letter-exchange": level_name(level - 1) if level else DELIVERY_EXCHANGE,
    }
    if queue_type == "quorum":
        arguments["x-dead-letter-strategy"] = "at-least-once"
    return arguments


def declare_topology(channel: Any, queue_type: str) -> None:
    """Declare every level's exchange, queue and bindings, and the delivery exchange."""
    for level in range(LEVELS - 1, -1, -1):
        name = level_name(level)
        channel.exchange_declare(name, "topic", durable=True, auto_delete=False)
        channel.queue_declare(
            name, durable=True, auto_delete=False, arguments=level_arguments(level, queue_type)
        )
        channel.queue_bind(name, name, _skip(level) + "1.#")
    for level in range(LEVELS - 1, 0, -1):
        channel.exchange_bind(level_name(level - 1), level_name(level), _skip(level) + "0.#")
    channel.exchange_declare(DELIVERY_EXCHANGE, "topic", durable=True, auto_delete=False)
    channel.exchange_bind(DELIVERY_EXCHANGE, level_name(0), _skip(0) + "0.#")


def _skip(level: int) -> str:
    """The pattern words for the digits above *level* (the most significant digit first)."""
    return "*." * (LEVELS - 1 - level)


def usable(queue: Queue, arguments: dict[str, Any] | None) -> bool:
    """Whether *queue* takes delayed messages: a quorum queue on a topic or fanout exchange
    with a routing key."""
    quorum = (arguments or {}).get("x-queue-type") == "quorum"
    return quorum and bindable(queue) and bool(queue.routing_key)


def bindable(queue: Queue) -> bool:
    """Whether the delivery exchange can reach *queue* (Celery binds these, quorum or not)."""
    return queue.exchange_type in ("topic", "fanout") and bool(queue.exchange_name)


def binding_key(queue: Queue) -> str:
    key = queue.routing_key
    return key if key.startswith("#") else f"#.{key}"


def bind_queue(channel: Any, queue: Queue) -> None:
    """Route what the delivery exchange lets out to *queue*: its exchange is bound to the
    delivery exchange, and the queue to its exchange, with ``#.<routing key>``."""
    key = binding_key(queue)
    channel.exchange_bind(queue.exchange_name, DELIVERY_EXCHANGE, key)
    channel.queue_bind(queue.name, queue.exchange_name, key)


def routing_key(delay_s: int, key: str) -> str:
    """The routing key of a message due in *delay_s* whole seconds, for a queue bound by
    *key*."""
    if not 0 < delay_s < 2**LEVELS:
        raise ValueError(f"a native delay is 1 to {2**LEVELS - 1} s, not {delay_s}")
    return ".".join(format(delay_s, f"0{LEVELS}b")) + "." + key


def whole_seconds_until(eta: Any, now: datetime.datetime | None = None) -> int | None:
    """The whole seconds from now until the ISO 8601 *eta* (a naive time is UTC), or None
    when it is not a readable time or is due within a second or beyond the topology's reach
    (the worker holds those as on classic queues)."""
    if not isinstance(eta, str):
        return None
    try:
        due = datetime.datetime.fromisoformat(eta)
    except ValueError:
        return None
    if due.tzinfo is None:
        due = due.replace(tzinfo=datetime.timezone.utc)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    seconds = int((due - now).total_seconds())
    return seconds if 0 < seconds < 2**LEVELS else None
