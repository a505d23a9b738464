"""celeriac writes ``basic.publish`` frames itself (amqp_frames): byte for byte what py-amqp
writes for the same message, read back intact from a real RabbitMQ, and values it does not
encode are left to py-amqp without reordering a batch."""

from __future__ import annotations

import datetime
import types
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import amqp
import pytest
from amqp import spec
from amqp.method_framing import frame_writer
from amqp.serialization import dumps

from celeriac import Celery
from celeriac.brokers import amqp_frames, amqp_publish
from tests.support.rabbitmq import RabbitNode

pytest_plugins = ["tests.support.rabbitmq_fixtures"]
pytestmark = pytest.mark.timeout(60)

TASK_PROPERTIES: dict[str, Any] = {
    "content_type": "application/json",
    "content_encoding": "utf-8",
    "application_headers": {
        "lang": "py",
        "task": "amqp.add",
        "id": "0b1c6f0e-5a4e-4c39-9d0b-4f4bfc8e1e8d",
        "eta": None,
        "retries": 0,
        "timelimit": [None, 10.5],
        "ignore_result": False,
        "big": 2**40,
        "negative": -5,
        "stamps": {"a": [1, "b", {"c": True}]},
        "argsrepr": "('ünïcode', ✓)",
    },
    "delivery_mode": 2,
    "priority": 3,
    "correlation_id": "0b1c6f0e-5a4e-4c39-9d0b-4f4bfc8e1e8d",
    "reply_to": "5d2f",
    "expiration": "60000",
}


def _py_amqp_frames(routing_key: str, body: bytes, properties: dict[str, Any], fm: int) -> bytes:
    written: list[bytes] = []
    sink = types.SimpleNamespace(write=lambda data: written.append(bytes(data)))
    write = frame_writer(types.SimpleNamespace(frame_max=fm, bytes_sent=0), sink)
    args = dumps("Bssbb", (0, "", routing_key, False, False))
    write(1, 1, spec.Basic.Publish, args, amqp.Message(body, **properties))
    return b"".join(written)


@pytest.mark.parametrize(
    ("body", "frame_max"),
    [(b"[[2, 3], {}, {}]", 131072), (b"x" * 10_000, 4096), (b"", 131072)],
    ids=["small", "split-into-body-frames", "empty"],
)
def test_frames_are_what_py_amqp_writes(body: bytes, frame_max: int) -> None:
    ours = amqp_frames.publish(1, "", "celery", body, TASK_PROPERTIES, frame_max)
    assert ours == _py_amqp_frames("celery", body, TASK_PROPERTIES, frame_max)


@pytest.mark.parametrize(
    "value",
    [Decimal("1.5"), datetime.datetime(2026, 1, 1), 2**70, object()],
    ids=["decimal", "datetime", "int-over-64-bits", "object"],
)
def test_values_it_does_not_encode_are_refused(value: Any) -> None:
    with pytest.raises(amqp_frames.Unencodable):
        amqp_frames.publish(1, "", "q", b"", {"application_headers": {"v": value}}, 131072)
    with pytest.raises(amqp_frames.Unencodable):
        amqp_frames.publish(1, "", "q" * 256, b"", {}, 131072)


@pytest.fixture
def raw_channel(rabbit_node: RabbitNode) -> Iterator[tuple[Any, Any]]:
    conn = amqp.Connection(f"127.0.0.1:{rabbit_node.port}", userid="guest", password="guest")
    conn.connect()
    try:
        channel = conn.channel()
        channel.queue_declare("frames-test", durable=False, auto_delete=False)
        channel.queue_purge("frames-test")
        yield conn, channel
        channel.queue_delete("frames-test")
    finally:
        conn.close()


def _take(channel: Any, queue: str) -> Any:
    message = channel.basic_get(queue, no_ack=True)
    assert message is not None, f"nothing in {queue}"
    if isinstance(message.body, str):  # py-amqp decoded it by its content_encoding
        message.body = message.body.encode(message.properties["content_encoding"])
    return message


def test_a_batch_with_a_value_left_to_py_amqp_arrives_whole_and_in_order(
    raw_channel: tuple[Any, Any],
) -> None:
    conn, channel = raw_channel
    odd = amqp.Message(b"second", application_headers={"price": Decimal("1.5")})
    big = b"y" * 300_000  # more than one body frame
    routed = [
        ("", "frames-test", amqp.Message(b"first", **TASK_PROPERTIES)),
        ("", "frames-test", odd),
        ("", "frames-test", amqp.Message(big, content_type="application/octet-stream")),
    ]
    amqp_publish.write_publishes(conn, channel, routed)
    first, second, third = (_take(channel, "frames-test") for _ in range(3))
    assert first.body == b"first"
    for name, value in TASK_PROPERTIES.items():
        if name != "application_headers":
            assert first.properties[name] == value
    headers = first.properties["application_headers"]
    assert headers["timelimit"] == [None, 10.5] and headers["big"] == 2**40
    assert headers["stamps"] == {"a": [1, "b", {"c": True}]}
    assert headers["argsrepr"] == TASK_PROPERTIES["application_headers"]["argsrepr"]
    assert second.body == b"second"
    assert second.properties["application_headers"]["price"] == Decimal("1.5")
    assert third.body == big


def test_a_celeriac_task_message_reads_back_as_sent(amqp_url: str) -> None:
    client = Celery("frames_client", broker=amqp_url)
    try:
        sent = client.send_task("amqp.add", ("ünïcode", "z" * 200_000), priority=4)
        conn = amqp.Connection(amqp_url.split("@")[1].split("/")[0])
        conn.connect()
        try:
            channel = conn.channel()
            message = _take(channel, "celery")
        finally:
            conn.close()
    finally:
        client.close()
    headers = message.properties["application_headers"]
    assert headers["id"] == sent.id and headers["task"] == "amqp.add"
    assert message.properties["correlation_id"] == sent.id
    assert message.properties["priority"] == 4 and message.properties["delivery_mode"] == 2
    assert "ünïcode".encode() in message.body or b"\\u00fcn\\u00efcode" in message.body
    assert len(message.body) > 200_000
