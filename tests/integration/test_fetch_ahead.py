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
from celeriac.worker.pools.solo import SoloPool
from celeriac.worker.runtime import WorkerRuntime


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
    runtime = WorkerRuntime(
        app, "ahead@host", "solo", 1, ["celery"], prefetch_multiplier=4, prefetch_window_s=0
    )
    runner = threading.Thread(target=SoloPool(runtime).run)
    runner.start()
    try:
        assert done.wait(30), f"only {ran} ran"
    finally:
        runtime.stop.warm.set()
        runner.join(10)
    assert ran == list(range(8)) and seen_taken_while_running == [True]
    assert client.hlen("unacked") == 0 and client.llen("celery") == 0
    app.close()
