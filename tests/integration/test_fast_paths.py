"""Fast paths on a real Redis (issue 8): deferred result writes and bulk publishing.

No timings here: these check that the fast paths keep every promise of the slow ones.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import pytest
from redis import Redis

from celeriac import Celery, states
from celeriac.backends import build_meta
from celeriac.backends.redis import RedisBackend, meta_key
from celeriac.brokers.redis import RedisBroker
from celeriac.config import Settings
from celeriac.errors import BackendError
from tests.support.workers import WorkerProcess


def test_a_deferred_store_is_visible_and_published_before_it_is_confirmed(
    backend_url: str,
) -> None:
    backend = RedisBackend(backend_url, Settings())
    reader = RedisBackend(backend_url, Settings())
    got: dict[str, object] = {}

    def wait() -> None:
        got.update(reader.wait_for("deferred-1", timeout_s=10))

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.2)  # let it subscribe; a late subscriber reads the key instead
    backend.store_deferred("deferred-1", build_meta("deferred-1", states.SUCCESS, 42), None)
    waiter.join(10)
    assert got["result"] == 42
    backend.confirm_stored()  # the answers were read without error
    backend.confirm_stored()  # and nothing is left to read
    meta = backend.get_meta("deferred-1")
    assert meta is not None and meta["status"] == states.SUCCESS
    backend.close()
    reader.close()


def test_many_deferred_stores_keep_their_order_and_expiry(backend_url: str) -> None:
    backend = RedisBackend(backend_url, Settings())
    for i in range(50):
        backend.store_deferred("same-id", build_meta("same-id", states.SUCCESS, i), 60.0)
    backend.confirm_stored()
    meta = backend.get_meta("same-id")
    assert meta is not None and meta["result"] == 49
    ttl = backend.client.pttl(meta_key("same-id"))
    assert 0 < ttl <= 60_000
    backend.close()


def test_a_refused_deferred_store_is_reported(backend_url: str) -> None:
    backend = RedisBackend(backend_url, Settings())
    backend.client.config_set("maxmemory", "1")  # now Redis refuses every write
    try:
        backend.store_deferred("refused", build_meta("refused", states.SUCCESS, 1), None)
        with pytest.raises(BackendError, match="refused"):
            backend.confirm_stored()
    finally:
        backend.client.config_set("maxmemory", "0")
    backend.store_deferred("after", build_meta("after", states.SUCCESS, 2), None)
    backend.confirm_stored()  # the connection is still in step
    assert backend.get_meta("after") is not None
    backend.close()


def test_bulk_publish_keeps_fifo_order_across_batches_and_priorities(redis_url: str) -> None:
    broker = RedisBroker(redis_url, Settings())
    items = [("bulk", f"m{i}".encode(), 0) for i in range(2500)]
    items += [("bulk", b"urgent", 9), ("other", b"elsewhere", 0), ("bulk", b"last", 0)]
    broker.publish_many(items)
    client = broker._client
    plain = [client.rpop("bulk") for _ in range(2502)]
    assert plain == [f"m{i}".encode() for i in range(2500)] + [b"last", None]
    assert client.llen("other") == 1
    assert client.smembers("_kombu.binding.bulk")
    broker.close()


@pytest.mark.parametrize("pool", [["-P", "solo"], ["-P", "prefork", "-c", "2"]])
def test_delay_and_send_many_run_and_store_results(
    redis_url: str,
    backend_url: str,
    worker_factory: Callable[..., WorkerProcess],
    pool: list[str],
) -> None:
    worker_factory("core_tasks", *pool)
    client = Celery("client", broker=redis_url, backend=backend_url)
    results = client.send_many("core.add", [(i, i) for i in range(200)])
    assert [r.get(timeout=30) for r in results] == [2 * i for i in range(200)]
    assert client.send_task("core.add", (2, 3)).get(timeout=30) == 5
    broker = Redis.from_url(redis_url)
    deadline = time.monotonic() + 10
    while broker.hlen("unacked") and time.monotonic() < deadline:  # acks ride the next fetch
        time.sleep(0.05)
    assert broker.hlen("unacked") == 0
    client.close()


def _envelope(tag: str, *, properties_last: bool = True, spaced: bool = True) -> bytes:
    """A task envelope as Celery (json.dumps, spaced) or celeriac (orjson, compact) writes it."""
    headers = {"task": "core.add", "id": f"id-{tag}", "delivery_tag": "a header, not the tag"}
    properties = {
        "correlation_id": f"id-{tag}",
        "delivery_info": {"exchange": "", "routing_key": "tags"},
        "priority": 0,
        "body_encoding": "base64",
        "delivery_tag": tag,
    }
    parts: list[tuple[str, object]] = [("body", "W1syLCAzXSwge30sIHt9XQ=="), ("content-type", "x")]
    if properties_last:
        parts += [("headers", headers), ("properties", properties)]
    else:
        parts += [("properties", properties), ("headers", headers)]
    separators = (", ", ": ") if spaced else (",", ":")
    return json.dumps(dict(parts), separators=separators).encode()


def test_fetch_records_each_envelope_under_its_own_delivery_tag(redis_url: str) -> None:
    broker = RedisBroker(redis_url, Settings())
    client = broker._client
    envelopes = {
        "celery-spaced": _envelope("celery-spaced"),
        "compact": _envelope("compact", spaced=False),
        "props-first": _envelope("props-first", properties_last=False),
        "odd tag with spaces": _envelope("odd tag with spaces"),
    }
    for raw in envelopes.values():
        client.lpush("tags", raw)
    deliveries = broker.fetch(["tags"], 10, 0)
    assert sorted(d.receipt for d in deliveries) == sorted(envelopes)
    for delivery in deliveries:
        assert delivery.raw == envelopes[delivery.receipt]
        entry = json.loads(client.hget("unacked", delivery.receipt))
        assert entry[0] == json.loads(envelopes[delivery.receipt])  # kombu's layout
        assert entry[1:] == ["", "tags"]  # back to the queue it was popped from
        assert client.zscore("unacked_index", delivery.receipt) is not None
    broker.close()


def test_more_than_a_thousand_acks_ride_one_fetch(redis_url: str) -> None:
    broker = RedisBroker(redis_url, Settings())
    client = broker._client
    client.lpush("many", *[_envelope(f"t{i}") for i in range(1500)])
    taken = broker.fetch(["many"], 1500, 0)
    assert len(taken) == 1500 and client.hlen("unacked") == 1500
    assert broker.fetch(["many"], 10, 0, acks=[d.receipt for d in taken]) == []
    assert client.hlen("unacked") == 0
    assert client.zcard("unacked_index") == 0
    assert client.scard(broker._owned_key) == 0
    broker.close()
