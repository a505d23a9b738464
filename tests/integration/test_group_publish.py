"""A group publishes its members together: one pipelined publish, not one round trip per
member (issue 8's "pipelined bulk publish for groups"), on a real Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from redis import Redis

from celeriac import Celery, chain, group
from celeriac.errors import InvalidTaskOptions


@pytest.fixture
def app(redis_url: str) -> Iterator[Celery]:
    app = Celery("grouped", broker=redis_url)

    @app.task(name="grouped.add")
    def add(x: int, y: int) -> int:
        return x + y

    yield app
    app.close()


def _lpush_calls(client: Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_lpush", {}).get("calls", 0))


def _queued(client: Redis) -> list[dict]:
    """The queue's envelopes in the order a worker takes them."""
    return [json.loads(raw) for raw in reversed(client.lrange("celery", 0, -1))]


def test_a_group_publishes_its_members_in_one_pipelined_push(app: Celery, redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    add = app.tasks["grouped.add"]
    app.send_task("grouped.add", (0, 0))  # connections and queue binding made already
    client.delete("celery")
    before = _lpush_calls(client)
    result = group(add.s(i, i) for i in range(50)).apply_async()
    assert _lpush_calls(client) - before == 1
    queued = _queued(client)
    assert [m["headers"]["id"] for m in queued] == [r.id for r in result.results]
    assert [m["headers"]["group_index"] for m in queued] == list(range(50))
    assert {m["headers"]["group"] for m in queued} == {result.id}


def test_nested_groups_and_chains_join_the_outer_groups_push(app: Celery, redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    add = app.tasks["grouped.add"]
    app.send_task("grouped.add", (0, 0))
    client.delete("celery")
    before = _lpush_calls(client)
    group(add.s(1, 1), chain(add.s(2, 2), add.s(3)), group(add.s(4, 4), add.s(5, 5))).apply_async()
    assert _lpush_calls(client) - before == 1
    assert [m["headers"]["argsrepr"] for m in _queued(client)] == [
        "(1, 1)",
        "(2, 2)",
        "(4, 4)",
        "(5, 5)",
    ]


def test_a_member_that_cannot_be_sent_stops_the_group_before_anything_is_published(
    app: Celery, redis_url: str
) -> None:
    client = Redis.from_url(redis_url)
    add = app.tasks["grouped.add"]
    members = [add.s(i, i) for i in range(5)]
    members[3] = add.s(3, 3).set(countdown="soon")
    with pytest.raises(InvalidTaskOptions, match="countdown"):
        group(members).apply_async()
    assert client.llen("celery") == 0
    app.send_task("grouped.add", (9, 9))  # and sending goes on as usual afterwards
    assert client.llen("celery") == 1


def test_publishing_together_holds_messages_until_the_block_ends(
    app: Celery, redis_url: str
) -> None:
    client = Redis.from_url(redis_url)
    with app.publishing_together():
        app.send_task("grouped.add", (1, 2))
        app.send_task("grouped.add", (3, 4))
        assert client.llen("celery") == 0
    assert client.llen("celery") == 2
