"""Dead letters on the ``memory://`` broker: count, requeue (all or one task), purge, and
what a dead letter says about its task."""

from __future__ import annotations

import uuid

import orjson
import pytest

from celeriac.brokers.base import DeadLetter
from celeriac.brokers.memory import MemoryBroker
from celeriac.protocol import SendOptions, build_envelope

QUEUE = "q"


@pytest.fixture
def broker() -> MemoryBroker:
    return MemoryBroker(f"memory://dead-{uuid.uuid4().hex}")


def envelope(task_id: str, priority: int = 0) -> bytes:
    return build_envelope(
        "unit.noop", task_id, [1], {}, SendOptions(queue=QUEUE, priority=priority)
    )


def kill(broker: MemoryBroker, *task_ids: str, priority: int = 0) -> None:
    """Publish these tasks, take them, and dead-letter them in the order given."""
    for task_id in task_ids:
        broker.publish(QUEUE, envelope(task_id, priority), priority)
        (delivery,) = broker.fetch([QUEUE], 1, 0.0)
        broker.dead_letter(delivery, f"reason for {task_id}")


def waiting_ids(broker: MemoryBroker) -> list[str]:
    return [orjson.loads(d.raw)["headers"]["id"] for d in broker.fetch([QUEUE], 100, 0.0)]


def test_dead_letter_count_counts_every_dead_letter_of_the_queue(broker: MemoryBroker) -> None:
    kill(broker, "a", "b", "c")
    assert (broker.dead_letter_count(QUEUE), broker.dead_letter_count("other")) == (3, 0)


def test_dead_letters_are_listed_newest_first_with_their_reasons(broker: MemoryBroker) -> None:
    kill(broker, "a", "b")
    assert [(d.task_id, d.reason) for d in broker.dead_letters(QUEUE)] == [
        ("b", "reason for b"),
        ("a", "reason for a"),
    ]


def test_requeue_dead_moves_every_dead_letter_back_in_the_order_they_died(
    broker: MemoryBroker,
) -> None:
    kill(broker, "a", "b", "c")
    assert broker.requeue_dead(QUEUE) == 3
    assert (waiting_ids(broker), broker.dead_letter_count(QUEUE)) == (["a", "b", "c"], 0)


def test_requeue_dead_goes_behind_messages_already_waiting(broker: MemoryBroker) -> None:
    kill(broker, "dead")
    broker.publish(QUEUE, envelope("waiting"))
    broker.requeue_dead(QUEUE)
    assert waiting_ids(broker) == ["waiting", "dead"]


def test_requeue_dead_with_a_task_id_moves_only_that_task(broker: MemoryBroker) -> None:
    kill(broker, "a", "b", "c")
    assert broker.requeue_dead(QUEUE, "b") == 1
    assert waiting_ids(broker) == ["b"]
    assert [d.task_id for d in broker.dead_letters(QUEUE)] == ["c", "a"]


def test_requeue_dead_of_an_unknown_task_id_moves_nothing(broker: MemoryBroker) -> None:
    kill(broker, "a")
    assert (broker.requeue_dead(QUEUE, "nope"), broker.dead_letter_count(QUEUE)) == (0, 1)


def test_requeue_dead_puts_a_message_back_in_its_priority_bucket(broker: MemoryBroker) -> None:
    kill(broker, "low", priority=9)
    broker.publish(QUEUE, envelope("high", 0), 0)
    broker.requeue_dead(QUEUE)
    broker.publish(QUEUE, envelope("high2", 0), 0)
    assert waiting_ids(broker) == ["high", "high2", "low"]


def test_requeued_message_is_the_exact_bytes_that_died(broker: MemoryBroker) -> None:
    kill(broker, "a")
    (before,) = broker.dead_letters(QUEUE)
    broker.requeue_dead(QUEUE)
    (delivery,) = broker.fetch([QUEUE], 1, 0.0)
    assert delivery.raw == before.raw


def test_purge_dead_deletes_them_and_returns_how_many(broker: MemoryBroker) -> None:
    kill(broker, "a", "b")
    assert broker.purge_dead(QUEUE) == 2
    assert (broker.dead_letter_count(QUEUE), broker.purge_dead(QUEUE)) == (0, 0)


def test_purge_dead_leaves_the_queue_alone(broker: MemoryBroker) -> None:
    kill(broker, "dead")
    broker.publish(QUEUE, envelope("waiting"))
    broker.purge_dead(QUEUE)
    assert waiting_ids(broker) == ["waiting"]


def test_dead_letter_reads_task_id_and_name_from_the_envelope() -> None:
    letter = DeadLetter(QUEUE, "why", 0.0, envelope("abc"))
    assert (letter.task_id, letter.task_name) == ("abc", "unit.noop")


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'{"headers": "x"}', b'{"headers": {}}'])
def test_dead_letter_without_readable_headers_has_no_task_id_or_name(raw: bytes) -> None:
    letter = DeadLetter(QUEUE, "why", 0.0, raw)
    assert (letter.task_id, letter.task_name) == (None, None)


def test_unparseable_dead_letter_is_requeued_as_it_was(broker: MemoryBroker) -> None:
    broker.publish(QUEUE, b"not json")
    broker.fetch([QUEUE], 1, 0.0)  # the broker dead-letters what it cannot track
    assert broker.requeue_dead(QUEUE) == 1
    assert broker.queue_length(QUEUE) == 1
