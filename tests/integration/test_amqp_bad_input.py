"""Broken AMQP messages on RabbitMQ: the worker stores a failure for any that carries an id,
keeps the message in the dead-letter queue, never crashes, and runs what comes after. Any
result backend goes with an AMQP broker (SQLite here)."""

from __future__ import annotations

from pathlib import Path

import amqp
import pytest

from celeriac import Celery
from celeriac.brokers import make_broker
from celeriac.config import Settings
from tests.support.rabbitmq import RabbitNode
from tests.support.workers import start_celeriac_worker

pytest_plugins = ["tests.support.rabbitmq_fixtures"]


def publish_raw(node: RabbitNode, body: bytes, **properties: object) -> None:
    conn = amqp.Connection(f"127.0.0.1:{node.port}")
    conn.connect()
    try:
        channel = conn.channel()
        channel.queue_declare("celery", durable=True, auto_delete=False)
        channel.basic_publish(amqp.Message(body, **properties), exchange="", routing_key="celery")
    finally:
        conn.close()


def test_broken_messages_get_a_stored_failure_and_the_worker_goes_on(
    amqp_url: str, rabbit_node: RabbitNode, tmp_path: Path
) -> None:
    backend = f"sqlite:///{tmp_path}/results.sqlite3"
    client = Celery("bad_client", broker=amqp_url, backend=backend)
    worker = start_celeriac_worker("amqp_tasks", amqp_url, "-P", "solo", backend_url=backend)
    try:
        headers = {"id": "bad-body-1", "task": "amqp.add", "lang": "py"}
        publish_raw(
            rabbit_node,
            b"{not json",
            content_type="application/json",
            content_encoding="utf-8",
            application_headers=headers,
        )
        publish_raw(rabbit_node, b"\x00\xffgarbage", content_type="application/octet-stream")
        publish_raw(
            rabbit_node,
            b"[[1], {}, {}]",
            content_type="application/x-python-serialize",
            content_encoding="binary",
            application_headers={"id": "pickled-1", "task": "amqp.add"},
        )
        after = client.send_task("amqp.add", (20, 22))
        assert after.get(timeout=30) == 42  # the worker survived the three before it
        bad = client.AsyncResult("bad-body-1")
        with pytest.raises(Exception, match=r"body cannot be decoded|not valid JSON"):
            bad.get(timeout=10)
        assert bad.state == "FAILURE"
        assert client.AsyncResult("pickled-1").state == "FAILURE"
        broker = make_broker(amqp_url, Settings({}))
        try:
            letters = broker.dead_letters("celery")
            assert {letter.task_id for letter in letters} >= {"bad-body-1", "pickled-1"}
            assert broker.dead_letter_count("celery") == 3
            assert broker.queue_length("celery") == 0
        finally:
            broker.close()
        assert worker.process.poll() is None
    finally:
        client.close()
        worker.stop()
        rabbit_node.reset()
