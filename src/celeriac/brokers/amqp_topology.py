"""Exchanges, queues and bindings declared on RabbitMQ as a Celery worker declares them.

A queue of ``task_queues`` (or the default ``celery`` queue) is durable and bound to its
exchange (the ``celery`` direct exchange by default) with its routing key. With
``task_default_queue_type = "quorum"`` (Celery 5.5's setting) the default queue is declared
with ``x-queue-type: quorum`` (QueueTypes says which queues, as Celery decides). Declaring
what exists with the same arguments changes nothing, so a Celery worker and a celeriac
worker can declare the same queues in any order.

A quorum queue gets ``x-queue-type`` and nothing more, as Celery declares it: RabbitMQ
refuses (PRECONDITION_FAILED) to declare an existing queue with any argument added or
missing, so an ``x-delivery-limit`` or ``x-dead-letter-*`` of ours would stop a Celery worker
or client from declaring the queue after us, and theirs from us. The redelivery cap is kept
by the consumer from the count every quorum queue hands out (amqp_dead); a broker-side limit
is a RabbitMQ policy, which needs no argument and clashes with no one.
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


class QueueTypes:
    """Which queues Celery declares as quorum queues: the default queue (when
    ``task_queues`` is not set) with ``task_default_queue_type``, queues created on demand
    with ``task_create_missing_queue_type``; a queue of ``task_queues`` has the arguments
    written in it. ``task_queue_max_priority`` gives every queue ``x-max-priority``."""

    def __init__(self, settings: Settings, configured: set[str]) -> None:
        self.default_only = not settings.get("task_queues")
        self.configured = set(configured)
        self.default_type = str(settings.get("task_default_queue_type") or "classic")
        self.missing_type = str(settings.get("task_create_missing_queue_type") or "classic")
        self.max_priority = settings.get("task_queue_max_priority")

    def arguments(self, queue: Queue) -> dict[str, Any] | None:
        arguments = dict(queue.queue_arguments or {})
        max_priority = queue.max_priority or self.max_priority
        if max_priority is not None:
            arguments.setdefault("x-max-priority", int(max_priority))
        if queue.name in self.configured:
            kind = self.default_type if self.default_only else "classic"
        else:
            kind = self.missing_type
        if kind == "quorum":
            arguments.setdefault("x-queue-type", "quorum")
        return arguments or None


def declare(channel: Any, queue: Queue, arguments: dict[str, Any] | None) -> None:
    """Declare *queue* with *arguments*, its exchange and the binding between them."""
    exchange = queue.exchange_name
    quorum = (arguments or {}).get("x-queue-type") == "quorum"
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
        arguments=arguments,
    )
    if exchange:
        channel.queue_bind(
            queue.name, exchange, queue.routing_key, arguments=queue.binding_arguments
        )
