"""Fetching ahead and lost fetch answers, on a real Redis (issue 8).

A one-at-a-time consumer sends its next fetch before running its last held task and reads
the answer afterwards. Every fetch carries a request id, so a fetch whose answer is lost is
asked again and hands back what it took: nothing sits in ``unacked`` that a live consumer
does not know it holds.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from redis import Redis

from celeriac import Celery
from celeriac.brokers.redis import RedisBroker
from celeriac.config import Settings
from celeriac.errors import BrokerError
from tests.support.workers import run_solo_pool


def _envelope(tag: str) -> bytes:
    properties = {"delivery_info": {"exchange": "", "routing_key": "q"}, "delivery_tag": tag}
    return json.dumps({"body": "", "headers": {"id": tag}, "properties": properties}).encode()


def _queue(client: Redis, count: int) -> list[str]:
    tags = [f"m{i}" for i in range(count)]
    client.lpush("q", *[_envelope(tag) for tag in tags])  # m0 is taken first
    return tags


def _lose_the_answer(broker: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection drops after Redis ran the fetch, before its answer is read."""
    conn = broker._fetch_conn

    def dropped(*args: object, **kwargs: object) -> object:
        conn.disconnect()
        raise ConnectionError("connection reset by peer")

    monkeypatch.setattr(conn, "read_response", dropped)


def _wait_for(condition: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def broker(redis_url: str) -> RedisBroker:
    broker = RedisBroker(redis_url, Settings())
    yield broker  # type: ignore[misc]
    broker.close()


def test_a_fetch_sent_ahead_takes_in_order_and_carries_acks(broker: RedisBroker) -> None:
    client = broker.client
    tags = _queue(client, 10)
    first = broker.fetch(["q"], 3, 0)
    assert [d.receipt for d in first] == tags[:3]
    assert broker.fetch_ahead(["q"], 4, [d.receipt for d in first])
    assert not broker.fetch_ahead(["q"], 4, [])  # one at a time
    ahead = broker.take_ahead()
    assert [d.receipt for d in ahead] == tags[3:7]
    assert [d.raw for d in ahead] == [_envelope(t) for t in tags[3:7]]
    assert sorted(t.decode() for t in client.hkeys("unacked")) == sorted(tags[3:7])
    assert {t.decode() for t in client.smembers(broker._owned_key)} == set(tags[3:7])
    assert broker.take_ahead() == []  # nothing more was sent


def test_a_lost_answer_is_handed_back_by_the_next_fetch(
    broker: RedisBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = broker.client
    tags = _queue(client, 10)
    assert broker.fetch_ahead(["q"], 4, [])
    _wait_for(lambda: client.hlen("unacked") == 4)  # Redis ran it
    _lose_the_answer(broker, monkeypatch)
    with pytest.raises(BrokerError, match="lost the broker"):
        broker.take_ahead()
    again = broker.fetch(["q"], 8, 0)  # the same four, nothing new
    assert [d.receipt for d in again] == tags[:4]
    assert [d.raw for d in again] == [_envelope(t) for t in tags[:4]]
    assert client.llen("q") == 6 and client.hlen("unacked") == 4
    after = broker.fetch(["q"], 2, 0, acks=[d.receipt for d in again])
    assert [d.receipt for d in after] == tags[4:6]  # a new request takes new messages
    assert client.hlen("unacked") == 2


def test_a_lost_answer_does_not_hand_back_what_this_consumer_no_longer_holds(
    broker: RedisBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = broker.client
    tags = _queue(client, 5)
    assert broker.fetch_ahead(["q"], 3, [])
    _wait_for(lambda: client.hlen("unacked") == 3)
    _lose_the_answer(broker, monkeypatch)
    with pytest.raises(BrokerError):
        broker.take_ahead()
    other = RedisBroker(broker.url, Settings(), client_name="sweeper")
    try:  # taken for dead meanwhile (heartbeats late): a survivor put its messages back
        assert other.recover_owner(broker.owner, max_losses=5) == (3, 0)
        (held_by_other,) = [d.receipt for d in other.fetch(["q"], 1, 0)]  # holds one now
    finally:
        other.close()
    again = broker.fetch(["q"], 2, 0)  # a new batch, not the other consumer's message
    assert sorted([held_by_other] + [d.receipt for d in again]) == tags[:3]
    assert client.hlen("unacked") == 3


def test_requeue_forgets_the_tags_in_the_holders_owned_set(broker: RedisBroker) -> None:
    client = broker.client
    tags = _queue(client, 3)
    broker.fetch(["q"], 2, 0)
    assert broker.requeue([tags[0]]) == 1
    assert {t.decode() for t in client.smembers(broker._owned_key)} == {tags[1]}


def test_retire_forgets_the_fetch_record(broker: RedisBroker) -> None:
    client = broker.client
    _queue(client, 2)
    broker.fetch(["q"], 2, 0)
    assert client.exists(broker._fetching_key)
    broker.retire()
    assert not client.exists(broker._fetching_key)


def test_a_solo_worker_takes_the_next_batch_while_its_last_held_task_runs(
    redis_url: str,
) -> None:
    app = Celery("ahead", broker=redis_url)
    app.conf.task_ignore_result = True
    client = Redis.from_url(redis_url)
    ran: list[int] = []
    seen_taken_while_running: list[bool] = []
    done = threading.Event()

    @app.task(name="ahead.probe")
    def probe(i: int) -> None:
        if i == 3:  # the last of the first batch of four (prefetch multiplier 4)
            deadline = time.monotonic() + 5
            while client.llen("celery") == 4 and time.monotonic() < deadline:
                time.sleep(0.005)
            seen_taken_while_running.append(client.llen("celery") < 4)
        ran.append(i)
        if len(ran) == 8:
            done.set()

    app.send_many("ahead.probe", [(i,) for i in range(8)])
    run_solo_pool(app, done, multiplier=4, window_s=0, what=lambda: f"only {ran} ran")
    assert ran == list(range(8)) and seen_taken_while_running == [True]
    assert client.hlen("unacked") == 0 and client.llen("celery") == 0
    app.close()


def test_a_fetch_ahead_that_fails_does_not_lose_the_task_about_to_start(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = Celery("ahead_fails", broker=redis_url)
    app.conf.task_ignore_result = True
    ran: list[int] = []
    done = threading.Event()

    @app.task(name="ahead.fails")
    def probe(i: int) -> None:
        ran.append(i)
        if len(ran) == 8:
            done.set()

    def lost(*args: object, **kwargs: object) -> bool:
        raise BrokerError("lost the broker (as during an outage)")

    monkeypatch.setattr(app.broker, "fetch_ahead", lost)
    app.send_many("ahead.fails", [(i,) for i in range(8)])
    run_solo_pool(app, done, multiplier=4, window_s=0, what=lambda: f"only {ran} ran")
    assert ran == list(range(8))
    assert Redis.from_url(redis_url).hlen("unacked") == 0
    app.close()


def _wait_in_thread(broker: RedisBroker, timeout_s: float = 10.0) -> tuple[threading.Thread, list]:
    got: list = []
    waiter = threading.Thread(target=lambda: got.extend(broker.wait_and_take(["q"], 4, timeout_s)))
    waiter.start()
    client = broker.client
    _wait_for(
        lambda: any(
            c.get("name", "").endswith(":take") and c.get("cmd") == "blmove"
            for c in client.client_list()
        )
    )
    return waiter, got


def test_an_idle_consumer_is_woken_with_the_message_already_in_unacked(
    broker: RedisBroker,
) -> None:
    client = broker.client
    waiter, got = _wait_in_thread(broker)
    client.lpush("q", _envelope("late"))
    waiter.join(10)
    assert [(d.queue, d.receipt, d.raw) for d in got] == [("q", "late", _envelope("late"))]
    assert client.hexists("unacked", "late") and client.sismember(broker._owned_key, "late")
    assert client.zscore("unacked_index", "late") is not None  # where a Celery sweep looks
    assert client.llen(broker._inbox_key) == 0
    assert broker.fetch(["q"], 4, 0, acks=["late"]) == []
    assert client.hlen("unacked") == 0 and client.scard(broker._owned_key) == 0


def test_a_woken_consumer_takes_what_else_is_queued_up_to_its_count(
    broker: RedisBroker,
) -> None:
    client = broker.client
    waiter, got = _wait_in_thread(broker)
    client.lpush("q", *[_envelope(f"m{i}") for i in range(6)])  # m0 comes first
    waiter.join(10)
    assert [d.receipt for d in got] == ["m0", "m1", "m2", "m3"]  # 4 asked for
    assert client.llen("q") == 2 and client.llen(broker._inbox_key) == 0
    assert sorted(client.smembers(broker._owned_key)) == [b"m0", b"m1", b"m2", b"m3"]
    acks = [d.receipt for d in got]
    assert [d.receipt for d in broker.fetch(["q"], 4, 0, acks=acks)] == ["m4", "m5"]
    assert sorted(client.hkeys("unacked")) == [b"m4", b"m5"]


def test_acks_go_out_with_the_blocking_move_and_apply_before_it_waits(
    broker: RedisBroker,
) -> None:
    client = broker.client
    _queue(client, 2)
    held = [d.receipt for d in broker.fetch(["q"], 2, 0)]
    got: list = []
    waiter = threading.Thread(
        target=lambda: got.extend(broker.wait_and_take(["q"], 4, 10, acks=held))
    )
    waiter.start()
    _wait_for(lambda: client.hlen("unacked") == 0)  # acked while it still waits
    assert waiter.is_alive() and client.scard(broker._owned_key) == 0
    client.lpush("q", _envelope("next"))
    waiter.join(10)
    assert [d.receipt for d in got] == ["next"]


def test_acks_refused_with_the_blocking_move_are_sent_again(broker: RedisBroker) -> None:
    client = broker.client
    _queue(client, 2)
    held = [d.receipt for d in broker.fetch(["q"], 2, 0)]
    client.script_flush()  # Redis restarted, say: the ack script is not run
    client.lpush("q", _envelope("next"))
    got = broker.wait_and_take(["q"], 4, 10, acks=held)
    assert [d.receipt for d in got] == ["next"]
    assert client.hkeys("unacked") == [b"next"] and client.llen(broker._inbox_key) == 0


def test_meanwhile_runs_once_the_move_is_sent(broker: RedisBroker) -> None:
    ran: list[bool] = []
    assert broker.wait_and_take(["q"], 4, 0.05, meanwhile=lambda: ran.append(True)) == []
    assert ran == [True]


def test_the_other_priority_lists_are_read_again_only_after_a_change(
    broker: RedisBroker,
) -> None:
    client = broker.client

    def llen_calls() -> int:
        return int(client.info("commandstats").get("cmdstat_llen", {}).get("calls", 0))

    assert broker.wait_and_take(["q"], 4, 0.05) == []
    first = llen_calls()
    assert first >= 3  # q's three other priority lists, tracked from now on
    assert broker.wait_and_take(["q"], 4, 0.05) == []
    assert llen_calls() == first  # no change reported: known empty, not read again
    client.lpush("q\x06\x163", _envelope("urgent"))
    client.rpop("q\x06\x163")  # taken by someone else: still a change
    assert broker.wait_and_take(["q"], 4, 0.05) == []
    assert llen_calls() == first + 3
    waiter, got = _wait_in_thread(broker)  # known empty again, and still watched
    client.lpush("q\x06\x166", _envelope("later"))
    waiter.join(10)
    assert [d.receipt for d in got] == ["later"]


def test_an_ack_that_does_not_ride_a_fetch_comes_after_the_adoption(broker: RedisBroker) -> None:
    client = broker.client
    waiter, got = _wait_in_thread(broker)
    client.lpush("q", _envelope("m"))
    waiter.join(10)
    assert [d.receipt for d in got] == ["m"]
    broker.ack(["m"])
    assert client.hlen("unacked") == 0 and client.llen(broker._inbox_key) == 0
    assert broker.fetch(["q"], 4, 0) == []


def test_a_message_at_another_priority_stops_the_blocking_move(broker: RedisBroker) -> None:
    client = broker.client
    waiter, got = _wait_in_thread(broker)
    client.lpush("q\x06\x163", _envelope("urgent"))  # Celery's list for priorities 3-5
    waiter.join(10)
    assert [d.receipt for d in got] == ["urgent"]
    client.lpush("q", _envelope("after"))  # nobody is blocked on the queue any more
    assert client.llen("q") == 1 and client.llen(broker._inbox_key) == 0


def test_quiet_until_the_timeout_returns_nothing(broker: RedisBroker) -> None:
    assert broker.wait_and_take(["q"], 4, 0.2) == []
    assert broker.client.llen(broker._inbox_key) == 0


def test_a_message_left_in_the_inbox_is_adopted_by_the_next_fetch(broker: RedisBroker) -> None:
    client = broker.client
    assert broker.wait_and_take(["q"], 4, 0.05) == []  # the inbox is set up for "q"
    client.lpush(broker._inbox_key, _envelope("moved"))  # a blocking move's answer was lost
    got = broker.fetch(["q"], 4, 0)
    assert [(d.queue, d.receipt) for d in got] == [("q", "moved")]
    assert client.hexists("unacked", "moved") and client.llen(broker._inbox_key) == 0


def test_a_dead_consumers_inbox_goes_back_to_its_queue(broker: RedisBroker) -> None:
    client = broker.client
    assert broker.wait_and_take(["q"], 4, 0.05) == []
    client.lpush(broker._inbox_key, _envelope("orphan"))  # died before adopting it
    survivor = RedisBroker(broker.url, Settings(), client_name="survivor")
    try:
        assert survivor.recover_owner(broker.owner, max_losses=5) == (1, 0)
        (back,) = [json.loads(raw) for raw in client.lrange("q", 0, -1)]
        assert back["properties"]["delivery_tag"] == "orphan"
        assert back["headers"]["redelivered"] is True  # it may have started: said so
        assert client.hget("celeriac.losses", "orphan") == b"1"  # counts toward the cap
        assert client.llen(broker._inbox_key) == 0 and client.hlen("unacked") == 0
        assert [d.receipt for d in survivor.fetch(["q"], 4, 0)] == ["orphan"]
    finally:
        survivor.close()


def test_a_consumer_of_several_queues_waits_the_usual_way(broker: RedisBroker) -> None:
    client = broker.client
    got: list = []
    waiter = threading.Thread(target=lambda: got.extend(broker.wait_and_take(["a", "q"], 4, 10)))
    waiter.start()
    _wait_for(lambda: any(c.get("name", "").endswith(":watch") for c in client.client_list()))
    client.lpush("q", _envelope("x"))
    waiter.join(10)
    assert [d.receipt for d in got] == ["x"]
    assert not client.exists(broker._inbox_key)


def _shaped(tag: str, *, headers_last: bool, spaced: bool) -> bytes:
    headers = {"task": "t", "id": "i", "delivery_tag": "header-not-the-tag"}
    properties = {"delivery_info": {"routing_key": "q"}, "delivery_tag": tag}
    parts = [("body", ""), ("properties", properties), ("headers", headers)]
    if not headers_last:
        parts = [parts[0], parts[2], parts[1]]
    separators = (", ", ": ") if spaced else (",", ":")
    return json.dumps(dict(parts), separators=separators).encode()


@pytest.mark.parametrize("headers_last", [False, True])
@pytest.mark.parametrize("spaced", [False, True])
@pytest.mark.parametrize("tag", ["plain-tag_1.2:3", "odd tag, with spaces"])
def test_the_fetch_script_records_the_properties_tag_not_a_header_of_that_name(
    broker: RedisBroker, headers_last: bool, spaced: bool, tag: str
) -> None:
    broker.client.lpush("q", _shaped(tag, headers_last=headers_last, spaced=spaced))
    (fetched,) = broker.fetch(["q"], 1, 0)
    assert fetched.receipt == tag
    assert broker.client.hkeys("unacked") == [tag.encode()]
