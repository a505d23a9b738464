"""The AMQP broker on a real RabbitMQ node: what the worker needs from any broker, and what
only AMQP gives (Celery's topology, native properties, redelivery when a consumer dies)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import amqp
import orjson
import pytest

from celeriac.brokers import Broker, Delivery, make_broker
from celeriac.config import Settings
from celeriac.errors import BrokerError
from celeriac.protocol import SendOptions, build_envelope
from celeriac.queues import Exchange, Queue
from tests.support.rabbitmq import RabbitNode

pytest_plugins = ["tests.support.rabbitmq_fixtures"]

FORK = multiprocessing.get_context("fork")
OpenBroker = Callable[..., Broker]


def envelope(label: str, queue: str, priority: int = 0, **headers: Any) -> bytes:
    return build_envelope(
        "contract.noop",
        label,
        [1, "two"],
        {"k": 3},
        SendOptions(queue=queue, priority=priority, headers=headers or None),
    )


def labels(deliveries: list[Delivery]) -> list[str]:
    return [orjson.loads(d.raw)["headers"]["id"] for d in deliveries]


@pytest.fixture
def queue() -> str:
    return f"q-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def open_broker(amqp_url: str) -> Iterator[OpenBroker]:
    opened: list[Broker] = []

    def open_(**conf: Any) -> Broker:
        broker = make_broker(amqp_url, Settings(conf), client_name="amqp-contract")
        opened.append(broker)
        return broker

    yield open_
    for broker in opened:
        broker.close()


@pytest.fixture
def broker(open_broker: OpenBroker) -> Broker:
    return open_broker()


def fetch_n(broker: Broker, queue: str, n: int, timeout_s: float = 5.0) -> list[Delivery]:
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        got += broker.fetch([queue], n - len(got), 0.2)
    return got


def raw_channel(node: RabbitNode) -> tuple[Any, Any]:
    conn = amqp.Connection(f"127.0.0.1:{node.port}")
    conn.connect()
    return conn, conn.channel()


def test_scheme_selects_the_amqp_broker(amqp_url: str) -> None:
    for url in (amqp_url, amqp_url.replace("amqp://", "pyamqp://")):
        broker = make_broker(url, Settings({}))
        try:
            assert type(broker).__name__ == "AmqpBroker"
            broker.ping()
        finally:
            broker.close()


def test_fetch_returns_messages_in_publish_order(broker: Broker, queue: str) -> None:
    for label in ("a", "b", "c"):
        broker.publish(queue, envelope(label, queue))
    assert labels(fetch_n(broker, queue, 3)) == ["a", "b", "c"]


def test_message_keeps_body_headers_and_properties(broker: Broker, queue: str) -> None:
    broker.publish(queue, envelope("id-1", queue, priority=5))
    (delivery,) = fetch_n(broker, queue, 1)
    sent = orjson.loads(envelope("id-1", queue, priority=5))
    got = orjson.loads(delivery.raw)
    assert got["body"] == sent["body"]
    assert got["content-type"] == "application/json"
    assert got["content-encoding"] == "utf-8"
    for name in ("task", "id", "root_id", "argsrepr", "kwargsrepr", "retries"):
        assert got["headers"][name] == sent["headers"][name]
    assert got["properties"]["correlation_id"] == "id-1"
    assert got["properties"]["delivery_mode"] == 2
    assert got["properties"]["priority"] == 5
    assert delivery.queue == queue


def test_message_lies_on_rabbitmq_as_celery_lays_it(
    broker: Broker, rabbit_node: RabbitNode, queue: str
) -> None:
    broker.publish(queue, envelope("native", queue, priority=3))
    conn, channel = raw_channel(rabbit_node)
    try:
        message = channel.basic_get(queue, no_ack=True)
    finally:
        conn.close()
    assert message is not None
    props = message.properties
    assert props["content_type"] == "application/json"
    assert props["content_encoding"] == "utf-8"
    assert props["correlation_id"] == "native"
    assert props["reply_to"] == "native"
    assert props["delivery_mode"] == 2
    assert props["priority"] == 3
    assert props["application_headers"]["task"] == "contract.noop"
    assert props["application_headers"]["id"] == "native"
    assert orjson.loads(message.body) == [[1, "two"], {"k": 3}, orjson.loads(message.body)[2]]


def test_default_queue_is_bound_to_the_celery_direct_exchange(
    broker: Broker, rabbit_node: RabbitNode
) -> None:
    broker.publish("celery", envelope("x", "celery"))
    conn, channel = raw_channel(rabbit_node)
    try:
        # passive: fails if it is not there as Celery declares it (a durable direct exchange)
        channel.exchange_declare("celery", "direct", passive=True)
        channel.queue_declare("celery", durable=True, auto_delete=False)  # same args: no error
        channel.basic_publish(amqp.Message(b"{}"), exchange="celery", routing_key="celery")
    finally:
        conn.close()
    assert broker.queue_length("celery") == 2


def test_topic_exchange_queue_receives_by_pattern(
    open_broker: OpenBroker, rabbit_node: RabbitNode
) -> None:
    media = Exchange("media", type="topic")
    broker = open_broker(task_queues=[Queue("video", media, routing_key="media.video.#")])
    broker.declare_queues([broker.queues["video"]])  # type: ignore[attr-defined]
    conn, channel = raw_channel(rabbit_node)
    try:
        channel.exchange_declare("media", "topic", passive=True)
        channel.basic_publish(amqp.Message(b"{}"), exchange="media", routing_key="media.video.hd")
        channel.basic_publish(amqp.Message(b"{}"), exchange="media", routing_key="media.audio")
    finally:
        conn.close()
    deadline = time.monotonic() + 5
    while broker.queue_length("video") < 1 and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the broker's count, bounded by the deadline
    assert broker.queue_length("video") == 1
    rabbit_node.reset(("video",))


def test_fetch_takes_at_most_max_count(broker: Broker, queue: str) -> None:
    for i in range(5):
        broker.publish(queue, envelope(f"m{i}", queue))
    first = broker.fetch([queue], 2, 2.0)
    assert 1 <= len(first) <= 2
    rest = fetch_n(broker, queue, 5 - len(first))
    assert sorted(labels(first + rest)) == [f"m{i}" for i in range(5)]


def test_publish_many_is_confirmed_and_in_order(broker: Broker, queue: str) -> None:
    broker.publish_many([(queue, envelope(f"m{i}", queue), 0) for i in range(50)])
    assert broker.queue_length(queue) == 50
    assert labels(fetch_n(broker, queue, 50)) == [f"m{i}" for i in range(50)]


def test_ack_removes_the_message_for_good(open_broker: OpenBroker, queue: str) -> None:
    broker = open_broker()
    broker.publish(queue, envelope("a", queue))
    (delivery,) = fetch_n(broker, queue, 1)
    broker.ack([delivery.receipt])
    broker.close()
    assert open_broker().fetch([queue], 1, 0.5) == []


def test_unacked_message_comes_back_when_the_connection_closes(
    open_broker: OpenBroker, queue: str
) -> None:
    first = open_broker()
    first.publish(queue, envelope("a", queue))
    assert labels(fetch_n(first, queue, 1)) == ["a"]
    first.close()
    (again,) = fetch_n(open_broker(), queue, 1)
    assert labels([again]) == ["a"]
    assert orjson.loads(again.raw)["properties"]["delivery_info"]["redelivered"] is True


def _take_and_hang(url: str, queue: str, ready: Any) -> None:
    broker = make_broker(url, Settings({}), client_name="victim")
    got = []
    while not got:
        got = broker.fetch([queue], 1, 1.0)
    ready.send(labels(got))
    time.sleep(600)  # killed by the test long before this


def test_messages_of_a_killed_process_are_redelivered_at_once(
    amqp_url: str, broker: Broker, queue: str
) -> None:
    broker.publish(queue, envelope("held", queue))
    parent, child = FORK.Pipe()
    process = FORK.Process(target=_take_and_hang, args=(amqp_url, queue, child))
    process.start()
    try:
        assert parent.poll(10) and parent.recv() == ["held"]
        assert process.pid is not None
        os.kill(process.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        (again,) = fetch_n(broker, queue, 1, timeout_s=5.0)
        assert labels([again]) == ["held"]
        assert time.monotonic() - killed_at < 2.0  # no visibility timeout on AMQP
    finally:
        process.join(10)


def test_requeue_to_front_is_fetched_next(broker: Broker, queue: str) -> None:
    for label in ("a", "b"):
        broker.publish(queue, envelope(label, queue))
    got = fetch_n(broker, queue, 2)
    broker.requeue([d.receipt for d in got if labels([d]) == ["a"]])
    assert labels(fetch_n(broker, queue, 1)) == ["a"]


def test_requeue_to_back_goes_behind_waiting_messages(
    broker: Broker, queue: str, open_broker: OpenBroker
) -> None:
    broker.publish(queue, envelope("a", queue))
    (first,) = fetch_n(broker, queue, 1)
    broker.publish(queue, envelope("b", queue))
    assert broker.requeue([first.receipt], to_front=False) == 1
    broker.close()
    assert labels(fetch_n(open_broker(), queue, 2)) == ["b", "a"]


def test_deferred_message_is_held_unacked_until_due(
    broker: Broker, queue: str, open_broker: OpenBroker
) -> None:
    broker.publish(queue, envelope("later", queue))
    (delivery,) = fetch_n(broker, queue, 1)
    due = time.time() + 0.3
    broker.defer(delivery, due)
    assert broker.promote_due(time.time()) == pytest.approx(due)
    assert broker.fetch([queue], 1, 0) == []
    assert broker.promote_due(due + 0.01) is None
    (again,) = broker.fetch([queue], 1, 0)
    assert again.receipt == delivery.receipt
    broker.close()  # not acked: RabbitMQ still has it
    assert labels(fetch_n(open_broker(), queue, 1)) == ["later"]


def test_dead_letters_keep_reason_and_can_be_requeued(
    broker: Broker, queue: str, rabbit_node: RabbitNode
) -> None:
    for label in ("a", "b"):
        broker.publish(queue, envelope(label, queue))
    for delivery in fetch_n(broker, queue, 2):
        broker.dead_letter(delivery, f"bad {labels([delivery])[0]}")
    assert broker.dead_letter_count(queue) == 2
    letters = broker.dead_letters(queue)
    assert [(x.task_id, x.reason) for x in letters] == [("b", "bad b"), ("a", "bad a")]
    assert broker.queue_length(queue) == 0
    assert broker.requeue_dead(queue, "a") == 1
    assert broker.dead_letter_count(queue) == 1
    assert labels(fetch_n(broker, queue, 1)) == ["a"]
    assert broker.purge_dead(queue) == 1
    rabbit_node.reset((queue,))


def test_purge_and_queue_length(broker: Broker, queue: str) -> None:
    broker.publish_many([(queue, envelope(f"m{i}", queue), 0) for i in range(3)])
    assert broker.queue_length(queue) == 3
    assert broker.purge([queue]) == 3
    assert broker.queue_length(queue) == 0
    assert broker.queue_length("no-such-queue-here") == 0


def test_fetch_waits_for_the_timeout_on_an_empty_queue(broker: Broker, queue: str) -> None:
    started = time.monotonic()
    assert broker.fetch([queue], 1, 0.4) == []
    assert 0.35 <= time.monotonic() - started < 2.0


def test_unreachable_broker_fails_fast_naming_the_host_not_the_password() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: the connect is refused
        url = f"amqp://alice:s3cret-pw@127.0.0.1:{port}//"
        broker = make_broker(url, Settings({"broker_connection_timeout": 2.0}))
        started = time.monotonic()
        with pytest.raises(BrokerError) as caught:
            broker.ping()
    assert time.monotonic() - started < 3.0
    text = str(caught.value)
    assert f"127.0.0.1:{port}" in text and "s3cret-pw" not in text
    assert "check that RabbitMQ is running" in text


def test_quorum_default_queue_is_declared_as_celery_declares_it(
    open_broker: OpenBroker, rabbit_node: RabbitNode
) -> None:
    broker = open_broker(task_default_queue_type="quorum", task_default_queue="qq")
    broker.publish("qq", envelope("q1", "qq"))
    listed = rabbit_node.ctl("list_queues", "name", "type", "arguments", "--no-table-headers")
    row = next(line for line in listed.splitlines() if line.startswith("qq\t"))
    assert "quorum" in row
    conn, channel = raw_channel(rabbit_node)
    try:  # Celery 5.5's declaration of it, with task_default_queue_type = "quorum"
        channel.queue_declare(
            "qq", durable=True, auto_delete=False, arguments={"x-queue-type": "quorum"}
        )
    finally:
        conn.close()
    (delivery,) = fetch_n(broker, "qq", 1)
    assert labels([delivery]) == ["q1"]
    broker.ack([delivery.receipt])
    rabbit_node.reset(("qq",))


def test_queue_of_task_queues_keeps_its_own_arguments_under_quorum_default(
    open_broker: OpenBroker, rabbit_node: RabbitNode
) -> None:
    broker = open_broker(task_default_queue_type="quorum", task_queues=[Queue("plain")])
    broker.publish("plain", envelope("p1", "plain"))
    listed = rabbit_node.ctl("list_queues", "name", "type", "--no-table-headers")
    row = next(line for line in listed.splitlines() if line.startswith("plain\t"))
    assert "classic" in row
    rabbit_node.reset(("plain",))
