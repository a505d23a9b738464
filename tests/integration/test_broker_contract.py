"""What every broker promises, written once and run on memory://, SQLite and a real Redis."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson
import pytest

from celeriac.brokers import Broker, Delivery, make_broker
from celeriac.config import Settings
from celeriac.protocol import SendOptions, build_envelope

FORK = multiprocessing.get_context("fork")
KINDS = ["memory", "sqlite", "redis"]
CROSS_PROCESS_KINDS = ["sqlite", "redis"]

OpenBroker = Callable[..., Broker]


def envelope(label: str, queue: str = "q", priority: int = 0) -> bytes:
    """A real Celery envelope whose task id is *label*, so a test can tell messages apart."""
    return build_envelope(
        "contract.noop", label, [], {}, SendOptions(queue=queue, priority=priority)
    )


def labels(deliveries: list[Delivery]) -> list[str]:
    return [orjson.loads(d.raw)["headers"]["id"] for d in deliveries]


def settings_for(**transport_options: Any) -> Settings:
    return Settings({"broker_transport_options": transport_options})


@pytest.fixture(params=KINDS)
def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    kind = request.param
    if kind == "memory":
        return f"memory://contract-{uuid.uuid4().hex}"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/broker.sqlite3"
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture
def open_broker(broker_url: str) -> Iterator[OpenBroker]:
    """Open brokers on the test's URL (each its own connection); all closed at teardown."""
    opened: list[Broker] = []

    def open_(client_name: str = "contract", **transport_options: Any) -> Broker:
        broker = make_broker(broker_url, settings_for(**transport_options), client_name=client_name)
        opened.append(broker)
        return broker

    yield open_
    for broker in opened:
        broker.close()


@pytest.fixture
def broker(open_broker: OpenBroker) -> Broker:
    return open_broker()


# memory:// lives in one process: there is no second process to race and every owner is
# alive, so tests marked brokers("sqlite", "redis") are not collected for it (tests/conftest.py).


def let_time_pass(seconds: float) -> None:
    """Leases and heartbeats age with the clock: here time passing is the input, not a wait
    for another thread."""
    threading.Event().wait(seconds)


def run_forked(target: Callable[..., None], *args: Any) -> Any:
    """Start *target* in a forked child; the caller must stop it (see stop_child)."""
    process = FORK.Process(target=target, args=args, daemon=True)
    process.start()
    return process


def stop_child(process: Any) -> None:
    if process.is_alive():
        process.kill()
    process.join(10)


# order
def test_fetch_returns_messages_in_publish_order(broker: Broker) -> None:
    for label in ("a", "b", "c"):
        broker.publish("q", envelope(label))
    assert labels(broker.fetch(["q"], 10, 0)) == ["a", "b", "c"]


def test_fetch_returns_the_envelope_bytes_unchanged(broker: Broker) -> None:
    raw = envelope("a")
    broker.publish("q", raw)
    [delivery] = broker.fetch(["q"], 1, 0)
    assert (delivery.queue, delivery.raw) == ("q", raw)


def test_fetch_takes_at_most_max_count(broker: Broker) -> None:
    for label in ("a", "b", "c"):
        broker.publish("q", envelope(label))
    assert labels(broker.fetch(["q"], 2, 0)) == ["a", "b"]


def test_publish_many_keeps_each_queue_in_order(broker: Broker) -> None:
    broker.publish_many(
        [
            ("q1", envelope("a", "q1"), 0),
            ("q2", envelope("b", "q2"), 0),
            ("q1", envelope("c", "q1"), 0),
        ]
    )
    assert (labels(broker.fetch(["q1"], 10, 0)), labels(broker.fetch(["q2"], 10, 0))) == (
        ["a", "c"],
        ["b"],
    )


def test_lower_priority_number_is_fetched_first(broker: Broker) -> None:
    for label, priority in (("p9", 9), ("p3", 3), ("p0", 0), ("p6", 6)):
        broker.publish("q", envelope(label, priority=priority), priority)
    assert labels(broker.fetch(["q"], 10, 0)) == ["p0", "p3", "p6", "p9"]


def test_priorities_in_one_celery_bucket_stay_fifo(broker: Broker) -> None:
    # Celery on Redis has four buckets: 0-2, 3-5, 6-8, 9
    for label, priority in (("first-p2", 2), ("second-p0", 0), ("third-p5", 5), ("fourth-p3", 3)):
        broker.publish("q", envelope(label, priority=priority), priority)
    assert labels(broker.fetch(["q"], 10, 0)) == ["first-p2", "second-p0", "third-p5", "fourth-p3"]


def test_queues_are_taken_in_the_order_given(broker: Broker) -> None:
    broker.publish("qa", envelope("from-a", "qa"))
    broker.publish("qb", envelope("from-b", "qb"))
    assert labels(broker.fetch(["qb", "qa"], 1, 0)) == ["from-b"]


def test_priority_outranks_queue_order(broker: Broker) -> None:
    broker.publish("qa", envelope("low", "qa", 9), 9)
    broker.publish("qb", envelope("high", "qb", 0), 0)
    assert labels(broker.fetch(["qa", "qb"], 1, 0)) == ["high"]


# claim
def test_fetched_message_is_not_fetched_again(broker: Broker) -> None:
    broker.publish("q", envelope("a"))
    broker.fetch(["q"], 1, 0)
    assert broker.fetch(["q"], 1, 0) == []


def test_racing_threads_get_every_message_exactly_once(open_broker: OpenBroker) -> None:
    count, racers = 200, 4
    open_broker().publish_many([("q", envelope(f"m{i}"), 0) for i in range(count)])
    brokers = [open_broker() for _ in range(racers)]
    start = threading.Barrier(racers)
    taken: list[list[str]] = [[] for _ in range(racers)]

    def drain(index: int) -> None:
        start.wait(10)
        while batch := brokers[index].fetch(["q"], 3, 0):
            taken[index].extend(labels(batch))
            brokers[index].ack([d.receipt for d in batch])

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    everything = [label for part in taken for label in part]
    assert sorted(everything) == sorted(f"m{i}" for i in range(count))


def _drain_in_child(url: str, start: Any, out: Connection) -> None:
    broker = make_broker(url, Settings(), client_name="racer")
    start.wait(10)
    got: list[str] = []
    while batch := broker.fetch(["q"], 3, 0):
        got.extend(labels(batch))
        broker.ack([d.receipt for d in batch])
    out.send(got)
    broker.close()


@pytest.mark.brokers("sqlite", "redis")
def test_racing_processes_get_every_message_exactly_once(broker_url: str, broker: Broker) -> None:
    count, racers = 300, 3
    broker.publish_many([("q", envelope(f"m{i}"), 0) for i in range(count)])
    start = FORK.Event()
    pipes = [FORK.Pipe(duplex=False) for _ in range(racers)]
    children = [run_forked(_drain_in_child, broker_url, start, w) for _, w in pipes]
    try:
        start.set()
        everything = []
        for reader, _ in pipes:
            assert reader.poll(30), "a racing child never reported"
            everything.extend(reader.recv())
    finally:
        for child in children:
            stop_child(child)
    assert sorted(everything) == sorted(f"m{i}" for i in range(count))


# settle
def test_ack_removes_the_message_for_good(broker: Broker) -> None:
    broker.publish("q", envelope("a"))
    [delivery] = broker.fetch(["q"], 1, 0)
    broker.ack([delivery.receipt])
    assert (broker.requeue([delivery.receipt]), broker.fetch(["q"], 1, 0)) == (0, [])


def test_requeue_to_front_is_fetched_next(broker: Broker) -> None:
    broker.publish("q", envelope("a"))
    broker.publish("q", envelope("b"))
    [first] = broker.fetch(["q"], 1, 0)
    assert broker.requeue([first.receipt], to_front=True) == 1
    assert labels(broker.fetch(["q"], 10, 0)) == ["a", "b"]


def test_requeue_to_back_goes_behind_waiting_messages(broker: Broker) -> None:
    broker.publish("q", envelope("a"))
    broker.publish("q", envelope("b"))
    [first] = broker.fetch(["q"], 1, 0)
    assert broker.requeue([first.receipt], to_front=False) == 1
    assert labels(broker.fetch(["q"], 10, 0)) == ["b", "a"]


def test_requeue_keeps_the_priority_bucket(broker: Broker) -> None:
    broker.publish("q", envelope("low", priority=9), 9)
    [low] = broker.fetch(["q"], 1, 0)
    broker.publish("q", envelope("high", priority=0), 0)
    broker.requeue([low.receipt], to_front=True)
    assert labels(broker.fetch(["q"], 10, 0)) == ["high", "low"]


def test_requeued_message_is_marked_redelivered(
    request: pytest.FixtureRequest, broker_url: str, broker: Broker
) -> None:
    broker.publish("q", envelope("a"))
    [first] = broker.fetch(["q"], 1, 0)
    broker.requeue([first.receipt])
    [again] = broker.fetch(["q"], 1, 0)
    assert orjson.loads(again.raw)["headers"]["redelivered"] is True


def test_dead_letter_keeps_reason_queue_and_message(broker: Broker) -> None:
    broker.publish("q", envelope("a"))
    [delivery] = broker.fetch(["q"], 1, 0)
    before = time.time()
    broker.dead_letter(delivery, "bad input")
    [letter] = broker.dead_letters("q")
    assert (letter.queue, letter.reason, letter.raw) == ("q", "bad input", delivery.raw)
    assert before - 1 <= letter.time <= time.time() + 1


def test_dead_lettered_message_is_no_longer_held(broker: Broker) -> None:
    broker.publish("q", envelope("a"))
    [delivery] = broker.fetch(["q"], 1, 0)
    broker.dead_letter(delivery, "bad input")
    assert (broker.requeue([delivery.receipt]), broker.fetch(["q"], 1, 0)) == (0, [])


def test_dead_letters_are_listed_newest_first(broker: Broker) -> None:
    broker.publish_many([("q", envelope("a"), 0), ("q", envelope("b"), 0)])
    for delivery in broker.fetch(["q"], 2, 0):
        broker.dead_letter(delivery, f"reason {labels([delivery])[0]}")
    assert [letter.reason for letter in broker.dead_letters("q")] == ["reason b", "reason a"]


# ETA / countdown
def _defer_one(broker: Broker, due_s: float, label: str = "a") -> Delivery:
    broker.publish("q", envelope(label))
    [delivery] = broker.fetch(["q"], 1, 0)
    broker.defer(delivery, due_s)
    return delivery


def test_deferred_message_is_not_fetchable_before_it_is_due(broker: Broker) -> None:
    due = time.time() + 600
    _defer_one(broker, due)
    assert broker.promote_due(time.time()) == pytest.approx(due)
    assert (broker.fetch(["q"], 1, 0), broker.queue_length("q")) == ([], 0)


def test_deferred_message_is_fetchable_once_due(broker: Broker) -> None:
    due = time.time() + 600
    _defer_one(broker, due)
    assert broker.promote_due(due + 1) is None
    assert labels(broker.fetch(["q"], 1, 0)) == ["a"]


def test_promote_due_reports_when_the_next_message_falls_due(broker: Broker) -> None:
    now = time.time()
    _defer_one(broker, now + 100, "soon")
    _defer_one(broker, now + 200, "later")
    assert broker.promote_due(now + 150) == pytest.approx(now + 200)
    assert labels(broker.fetch(["q"], 10, 0)) == ["soon"]


def test_promoted_message_keeps_its_priority_bucket(
    request: pytest.FixtureRequest, broker_url: str, broker: Broker
) -> None:
    broker.publish("q", envelope("low", priority=9), 9)
    [low] = broker.fetch(["q"], 1, 0)
    due = time.time() + 600
    broker.defer(low, due)
    broker.publish("q", envelope("high", priority=0), 0)
    broker.promote_due(due + 1)
    assert labels(broker.fetch(["q"], 10, 0)) == ["high", "low"]


def test_deferred_message_is_no_longer_held(broker: Broker) -> None:
    delivery = _defer_one(broker, time.time() + 600)
    assert broker.requeue([delivery.receipt]) == 0


# inspection and maintenance
def test_queue_length_counts_waiting_messages_of_every_priority(broker: Broker) -> None:
    for label, priority in (("a", 0), ("b", 5), ("c", 9)):
        broker.publish("q", envelope(label, priority=priority), priority)
    broker.fetch(["q"], 1, 0)
    assert broker.queue_length("q") == 2


def test_purge_removes_waiting_messages_and_counts_them(broker: Broker) -> None:
    broker.publish_many(
        [("q", envelope("a"), 0), ("q", envelope("b"), 9), ("other", envelope("c"), 0)]
    )
    assert broker.purge(["q"]) == 2
    assert (broker.queue_length("q"), broker.queue_length("other")) == (0, 1)


def test_purge_leaves_claimed_messages_to_their_consumer(broker: Broker) -> None:
    broker.publish_many([("q", envelope("a"), 0), ("q", envelope("b"), 0)])
    [held] = broker.fetch(["q"], 1, 0)
    broker.purge(["q"])
    assert broker.requeue([held.receipt]) == 1


def test_messages_outlive_the_connection_that_published_them(open_broker: OpenBroker) -> None:
    producer = open_broker()
    producer.publish("q", envelope("a"))
    producer.close()
    assert labels(open_broker().fetch(["q"], 1, 0)) == ["a"]


# waiting
def test_fetch_on_an_empty_queue_waits_for_the_whole_timeout(broker: Broker) -> None:
    started = time.monotonic()
    assert broker.fetch(["q"], 1, 0.3) == []
    assert time.monotonic() - started >= 0.28


def test_fetch_returns_promptly_when_a_message_arrives(open_broker: OpenBroker) -> None:
    consumer, producer = open_broker(), open_broker()
    got: list[Delivery] = []
    waiter = threading.Thread(target=lambda: got.extend(consumer.fetch(["q"], 1, 30)))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive(), "fetch returned before anything was published"
    producer.publish("q", envelope("a"))
    waiter.join(5)
    assert (waiter.is_alive(), labels(got)) == (False, ["a"])


def _fetch_in_child(url: str, ready: Any, out: Connection) -> None:
    broker = make_broker(url, Settings(), client_name="waiter")
    broker.ping()
    ready.set()
    got = broker.fetch(["q"], 1, 30)
    out.send((time.time(), labels(got)))
    broker.close()


@pytest.mark.brokers("sqlite", "redis")
def test_fetch_in_another_process_wakes_when_a_message_arrives(
    broker_url: str, broker: Broker
) -> None:
    ready = FORK.Event()
    reader, writer = FORK.Pipe(duplex=False)
    child = run_forked(_fetch_in_child, broker_url, ready, writer)
    try:
        assert ready.wait(10)
        published_at = time.time()
        broker.publish("q", envelope("a"))
        assert reader.poll(10), "the waiting process never woke"
        returned_at, got = reader.recv()
    finally:
        stop_child(child)
    assert got == ["a"]
    assert returned_at - published_at < 2.0


# leases
def _claim_and_hang(url: str, claimed: Connection) -> None:
    broker = make_broker(url, settings_for(visibility_timeout=1), client_name="doomed")
    claimed.send(labels(broker.fetch(["q"], 1, 10)))
    threading.Event().wait()  # hold the claim until SIGKILL


@pytest.mark.brokers("sqlite")
def test_message_of_a_killed_claimer_comes_back_after_the_visibility_timeout(
    broker_url: str, open_broker: OpenBroker
) -> None:
    broker = open_broker(visibility_timeout=1)
    broker.publish("q", envelope("a"))
    reader, writer = FORK.Pipe(duplex=False)
    child = run_forked(_claim_and_hang, broker_url, writer)
    try:
        assert reader.poll(10) and reader.recv() == ["a"]
        os.kill(child.pid, signal.SIGKILL)
    finally:
        stop_child(child)
    [again] = broker.fetch(["q"], 1, 10)
    assert labels([again]) == ["a"]
    assert orjson.loads(again.raw)["headers"]["redelivered"] is True


def test_restore_lost_puts_the_message_back(broker: Broker) -> None:
    broker.publish("q", envelope("a"))
    [held] = broker.fetch(["q"], 1, 0)
    assert broker.restore_lost([held.receipt], max_losses=5) == (1, 0)
    assert labels(broker.fetch(["q"], 1, 0)) == ["a"]


@pytest.mark.brokers("sqlite", "redis")
def test_message_lost_more_than_max_losses_goes_to_dead_letters(
    broker_url: str, broker: Broker
) -> None:
    broker.publish("q", envelope("a"))
    for _ in range(2):
        [held] = broker.fetch(["q"], 1, 0)
        broker.restore_lost([held.receipt], max_losses=2)
    [held] = broker.fetch(["q"], 1, 0)
    assert broker.restore_lost([held.receipt], max_losses=2) == (0, 1)
    assert "died 3 times" in broker.dead_letters("q")[0].reason


@pytest.mark.brokers("sqlite", "redis")
def test_recover_owner_puts_back_everything_the_owner_holds(
    broker_url: str, open_broker: OpenBroker
) -> None:
    doomed, survivor = open_broker("doomed"), open_broker("survivor")
    doomed.publish_many([("q", envelope("a"), 0), ("q", envelope("b"), 0)])
    doomed.fetch(["q"], 2, 0)
    assert survivor.recover_owner(doomed.owner, max_losses=5) == (2, 0)
    assert sorted(labels(survivor.fetch(["q"], 10, 0))) == ["a", "b"]  # Redis: any order


@pytest.mark.brokers("sqlite", "redis")
def test_recover_owner_without_max_losses_counts_no_loss(
    broker_url: str, open_broker: OpenBroker
) -> None:
    # a dead prefork child's prefetched messages never ran: they must not creep towards
    # the dead letters when a poison task keeps killing the child next to them
    survivor = open_broker("survivor")
    survivor.publish("q", envelope("innocent"))
    for round_ in range(4):
        doomed = open_broker(f"doomed{round_}")
        doomed.fetch(["q"], 1, 0)
        assert survivor.recover_owner(doomed.owner, max_losses=None) == (1, 0)
    [held] = survivor.fetch(["q"], 1, 0)
    assert survivor.restore_lost([held.receipt], max_losses=1) == (1, 0)  # a first loss
    assert survivor.dead_letters("q") == []


@pytest.mark.brokers("sqlite", "redis")
def test_a_lost_task_put_back_and_taken_again_is_not_put_back_twice(
    broker_url: str, open_broker: OpenBroker
) -> None:
    # a prefork child died running it: the manager puts the running task back first, then
    # everything the child held; a sibling may have taken the first copy in between
    doomed, manager, sibling = open_broker("doomed"), open_broker("manager"), open_broker("sib")
    doomed.publish("q", envelope("running"))
    [held] = doomed.fetch(["q"], 1, 0)
    assert manager.restore_lost([held.receipt], max_losses=5, owner=doomed.owner) == (1, 0)
    [taken] = sibling.fetch(["q"], 1, 0)
    assert labels([taken]) == ["running"]
    assert manager.recover_owner(doomed.owner, max_losses=None) == (0, 0)
    assert sibling.fetch(["q"], 1, 0) == []  # no second copy for a third process


@pytest.mark.brokers("sqlite", "redis")
def test_a_dead_owner_counts_a_loss_only_for_what_it_had_started(
    broker_url: str, open_broker: OpenBroker
) -> None:
    # a whole worker SIGKILLed again and again: what it had only prefetched is innocent
    survivor = open_broker("survivor")
    survivor.publish_many([("q", envelope(label), 0) for label in ("running", "waiting")])
    for round_ in range(4):
        doomed = open_broker(f"doomed{round_}")
        held = doomed.fetch(["q"], 2, 0)
        running = [d.receipt for d in held if labels([d]) == ["running"]]
        doomed.heartbeat([doomed.owner], {doomed.owner: running})
        # the running one's third loss is past the cap; the waiting one never counts one
        assert (
            survivor.recover_owner(doomed.owner, max_losses=2)
            == [(2, 0), (2, 0), (1, 1), (1, 0)][round_]
        )
    assert [letter.task_id for letter in survivor.dead_letters("q")] == ["running"]
    assert labels(survivor.fetch(["q"], 10, 0)) == ["waiting"]


@pytest.mark.brokers("sqlite", "redis")
def test_an_owner_that_said_nothing_of_what_it_started_counts_every_loss(
    broker_url: str, open_broker: OpenBroker
) -> None:
    survivor = open_broker("survivor")
    survivor.publish("q", envelope("a"))
    for round_ in range(2):
        doomed = open_broker(f"doomed{round_}")
        doomed.fetch(["q"], 1, 0)
        doomed.heartbeat([doomed.owner])  # no started receipts: nothing known
        assert survivor.recover_owner(doomed.owner, max_losses=1) == (
            (1, 0) if round_ == 0 else (0, 1)
        )


@pytest.mark.brokers("sqlite", "redis")
def test_recover_puts_back_only_the_claims_of_silent_owners(
    broker_url: str, open_broker: OpenBroker
) -> None:
    silent, alive = open_broker("silent"), open_broker("alive")
    silent.publish_many([("q", envelope("silent's"), 0), ("q", envelope("alive's"), 0)])
    silent.fetch(["q"], 1, 0)
    [kept] = alive.fetch(["q"], 1, 0)
    alive.heartbeat([silent.owner, alive.owner])
    let_time_pass(0.3)
    alive.heartbeat([alive.owner])
    assert alive.recover(0.25, None, max_losses=5) == (1, 0)
    assert labels(alive.fetch(["q"], 10, 0)) == ["silent's"]
    assert alive.requeue([kept.receipt]) == 1


@pytest.mark.brokers("sqlite", "redis")
def test_recover_puts_back_a_claim_older_than_the_visibility_timeout(
    broker_url: str, broker: Broker
) -> None:
    broker.publish("q", envelope("a"))
    broker.fetch(["q"], 1, 0)
    let_time_pass(0.3)
    assert broker.recover(3600, 0.25, max_losses=5) == (1, 0)
    assert labels(broker.fetch(["q"], 1, 0)) == ["a"]


@pytest.mark.brokers("sqlite", "redis")
def test_heartbeat_keeps_a_long_claim_from_the_visibility_sweep(
    broker_url: str, broker: Broker
) -> None:
    broker.publish("q", envelope("a"))
    [held] = broker.fetch(["q"], 1, 0)
    let_time_pass(0.3)
    broker.heartbeat([broker.owner])
    assert broker.recover(3600, 0.25, max_losses=5) == (0, 0)
    assert broker.requeue([held.receipt]) == 1


# revoked task ids
def test_revoked_ids_are_shared_through_the_broker(open_broker: OpenBroker) -> None:
    open_broker().add_revoked(["t1", "t2"], ttl_s=60)
    assert open_broker().revoked_ids() == {"t1", "t2"}


def test_revoking_changes_the_revoked_version(broker: Broker) -> None:
    before = broker.revoked_version()
    broker.add_revoked(["t1"], ttl_s=60)
    assert broker.revoked_version() != before


def test_revoked_id_is_forgotten_after_its_ttl(broker: Broker) -> None:
    broker.add_revoked(["old"], ttl_s=0.2)
    broker.add_revoked(["new"], ttl_s=60)
    let_time_pass(0.3)
    assert broker.revoked_ids() == {"new"}
