"""Exchanges, queues and bindings declared on RabbitMQ as a Celery worker declares them.

A queue of ``task_queues`` (or the default ``celery`` queue) is durable and bound to its
exchange (the ``celery`` direct exchange by default) with its routing key. With
``task_default_queue_type = "quorum"`` (Celery 5.5's setting) queues are declared with
``x-queue-type: quorum``. Declaring what exists with the same arguments changes nothing, so
a Celery worker and a celeriac worker can declare the same queues in any order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..queues import Queue, Queues

if TYPE_CHECKING:
    from ..config import Settings


def queues_from(settings: Settings) -> Queues:
    """The app's queue declarations, read from its settings as the app's router reads them."""
    return Queues(
        settings.get("task_queues"),
        default_queue=settings.get("task_default_queue") or "celery",
        default_exchange=settings.get("task_default_exchange"),
        default_exchange_type=settings.get("task_default_exchange_type") or "direct",
        default_routing_key=settings.get("task_default_routing_key"),
        create_missing=bool(settings.get("task_create_missing_queues", True)),
    )


def queue_arguments(queue: Queue, queue_type: str) -> dict[str, Any] | None:
    """The ``x-`` arguments of *queue*: its own, ``x-max-priority`` from ``max_priority``,
    and ``x-queue-type`` for quorum queues."""
    arguments = dict(queue.queue_arguments or {})
    if queue.max_priority is not None:
        arguments.setdefault("x-max-priority", int(queue.max_priority))
    if queue_type == "quorum":
        arguments.setdefault("x-queue-type", "quorum")
    return arguments or None


def declare(channel: Any, queue: Queue, queue_type: str = "classic") -> None:
    """Declare *queue*, its exchange and the binding between them on *channel*."""
    exchange = queue.exchange_name
    quorum = (queue_arguments(queue, queue_type) or {}).get("x-queue-type") == "quorum"
    if exchange:
        kind = queue.exchange_type
        durable, auto_delete = True, False
        if queue.exchange is not None and not isinstance(queue.exchange, str):
            durable = bool(queue.exchange.durable)
            auto_delete = bool(queue.exchange.auto_delete)
        channel.exchange_declare(exchange, kind, durable=durable, auto_delete=auto_delete)
    channel.queue_declare(
        queue.name,
        durable=True if quorum else queue.durable,
        exclusive=False if quorum else queue.exclusive,
        auto_delete=False if quorum else queue.auto_delete,
        arguments=queue_arguments(queue, queue_type),
    )
    if exchange:
        channel.queue_bind(
            queue.name, exchange, queue.routing_key, arguments=queue.binding_arguments
        )
