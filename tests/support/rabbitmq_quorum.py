"""Small looks into a test RabbitMQ node for the quorum-queue tests."""

from __future__ import annotations

import amqp

from tests.support.rabbitmq import RabbitNode


def _connect(node: RabbitNode) -> amqp.Connection:
    conn = amqp.Connection(f"127.0.0.1:{node.port}", userid="guest", password="guest")
    conn.connect()
    return conn


def ready_count(node: RabbitNode, queue: str) -> int:
    """Messages ready in *queue* (0 when it does not exist)."""
    conn = _connect(node)
    try:
        return int(conn.channel().queue_declare(queue, passive=True).message_count)
    except amqp.exceptions.NotFound:
        return 0
    finally:
        conn.collect()


def forget(node: RabbitNode, *names: str) -> None:
    """Delete the queues *names*, their dead-letter queues and the exchanges of those names:
    a test starts from nothing, and leaves no exchange of another type behind."""
    node.reset(names)
    conn = _connect(node)
    try:
        channel = conn.channel()
        for name in names:
            channel.exchange_delete(name)
    finally:
        conn.close()
