"""Chord error paths on a real worker over Redis, as a Celery worker runs them: errbacks on
header tasks (their own, and ``chord.link_error`` with
``task_allow_error_cb_on_chord_header``), a header failure reaching the errbacks of a body
that is a group, a chain or another chord, an errback given to a chord before its body,
a header task whose result is a group giving the body nested lists, and two groups in a
chain."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from celeriac import Celery, chain, chord, group
from celeriac.errors import ChordError
from tests.support.chord_error_tasks import ChordErrorTasks, define_tasks
from tests.support.redis_server import RedisServer
from tests.support.workers import WorkerProcess, start_celeriac_worker

WAIT_S = 30.0


@dataclass
class Stack:
    client: Celery
    t: ChordErrorTasks
    worker: WorkerProcess
    results: redis.Redis


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer) -> Iterator[Stack]:
    redis_server.client(6).flushdb()
    redis_server.client(7).flushdb()
    broker_url, backend_url = redis_server.url(6), redis_server.url(7)
    worker = start_celeriac_worker(
        "chord_error_tasks", broker_url, "-P", "threads", "-c", "4", backend_url=backend_url
    )
    client = Celery("chord_error_client", broker=broker_url, backend=backend_url)
    try:
        yield Stack(client, define_tasks(client), worker, redis_server.client(7))
    finally:
        worker.stop()
        client.close()


@pytest.fixture
def header_errbacks(stack: Stack) -> Iterator[None]:
    stack.client.conf.task_allow_error_cb_on_chord_header = True
    yield
    stack.client.conf.task_allow_error_cb_on_chord_header = False


def new_key() -> str:
    return f"errbacks-{uuid.uuid4()}"


def recorded(results: redis.Redis, key: str, count: int) -> list[str]:
    """Wait (BLPOP, with a deadline) until *count* labels were recorded under *key*."""
    labels: list[str] = []
    deadline = time.monotonic() + WAIT_S
    while len(labels) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"only {labels} of {count} errback runs under {key}")
        popped: Any = results.blpop([key], timeout=max(1, int(left)))
        if popped is not None:
            labels.append(popped[1].decode())
    return sorted(labels)


def failing_header(t: ChordErrorTasks) -> list[Any]:
    return [t.add.si(1, 1), t.fail.si("header-failed")]


def body_of(t: ChordErrorTasks, kind: str) -> Any:
    if kind == "group":
        return group(t.identity.s(), t.identity.s())
    if kind == "chain":
        return chain(t.identity.s(), t.identity.s())
    if kind == "chord":
        return chord([t.identity.s(), t.identity.s()], t.identity.s())
    return t.tsum.s()


# errbacks on header tasks
def test_a_header_tasks_own_errback_runs_when_it_fails(stack: Stack) -> None:
    t, key = stack.t, new_key()
    header = [t.add.si(1, 1), t.fail.si("x").on_error(t.record.si(key, "own"))]
    result = chord(header)(t.tsum.s())
    with pytest.raises(ChordError):
        result.get(timeout=WAIT_S)
    assert recorded(stack.results, key, 1) == ["own"]


@pytest.mark.usefixtures("header_errbacks")
@pytest.mark.parametrize("body", ["task", "group", "chain", "chord"])
def test_chord_link_error_reaches_the_failed_header_task_when_allowed(
    stack: Stack, body: str
) -> None:
    t, key = stack.t, new_key()
    c = chord(failing_header(t), body_of(t, body))
    c.link_error(t.record.si(key, "errback"))
    c.delay()
    # once for the failed header task, at least once for the body that cannot run
    assert recorded(stack.results, key, 2) == ["errback", "errback"]


# a body of each type gets the chord's error
@pytest.mark.parametrize("body", ["task", "group", "chain", "chord"])
def test_the_bodys_own_errback_runs_when_the_header_fails(stack: Stack, body: str) -> None:
    t, key = stack.t, new_key()
    sig = body_of(t, body)
    sig.link_error(t.record.si(key, "body"))
    result = chord(failing_header(t), sig).delay()
    runs = 2 if body == "group" else 1  # a group's errback is linked to each member
    assert recorded(stack.results, key, runs) == ["body"] * runs
    with pytest.raises((ChordError, ValueError)):
        result.get(timeout=WAIT_S)


def test_a_group_bodys_own_errbacks_run_for_each_member(stack: Stack) -> None:
    t, key = stack.t, new_key()
    body = group(t.identity.s(), t.identity.s()).set(link_error=[t.record.si(key, "group")])
    result = chord(failing_header(t), body).delay()
    assert recorded(stack.results, key, 2) == ["group", "group"]
    # as Celery stores it: each member fails with the header task's own error
    with pytest.raises(ValueError, match="header-failed"):
        result.get(timeout=WAIT_S)


def test_a_chain_bodys_errback_set_on_the_chain_runs(stack: Stack) -> None:
    t, key = stack.t, new_key()
    # led by a group, the chain travels whole in the header messages, as Celery sends it
    steps = [group(t.identity.s(), t.identity.s()), group(t.tsum.s(), t.tsum.s())]
    body = chain(*steps).set(link_error=[t.record.si(key, "chain")])
    result = chord(failing_header(t), body).delay()
    assert recorded(stack.results, key, 1) == ["chain"]
    with pytest.raises((ChordError, ValueError), match="header-failed"):
        result.get(timeout=WAIT_S)


@pytest.mark.parametrize("allowed", [False, True])
def test_an_errback_given_before_the_body_is_kept(stack: Stack, allowed: bool) -> None:
    t, key = stack.t, new_key()
    stack.client.conf.task_allow_error_cb_on_chord_header = allowed
    try:
        pending = chord(failing_header(t))
        pending.link_error(t.record.si(key, "pending"))
    finally:
        stack.client.conf.task_allow_error_cb_on_chord_header = False
    result = pending(t.tsum.s())
    with pytest.raises(ChordError):
        result.get(timeout=WAIT_S)
    runs = 2 if allowed else 1
    assert recorded(stack.results, key, runs) == ["pending"] * runs


# values
def test_a_header_task_ending_in_a_group_gives_the_body_a_nested_list(stack: Stack) -> None:
    t = stack.t
    inner = chain(t.identity.si(42), group(t.identity.s(), t.identity.s()))
    assert chord(group(inner), t.identity.s()).delay().get(timeout=WAIT_S) == [[42, 42]]
    mixed = chord([inner, t.identity.si(1)], t.identity.s()).delay()
    assert mixed.get(timeout=WAIT_S) == [[42, 42], 1]


def test_a_group_after_a_group_gets_the_first_groups_values(stack: Stack) -> None:
    t = stack.t
    first = group(t.add.si(1, 1), t.add.si(2, 2))
    result = chain(first, group(t.identity.s(), t.tsum.s())).delay()
    assert result.get(timeout=WAIT_S) == [[2, 4], 6]
    three = chain(first, group(t.tsum.s(), t.tsum.s()), t.tsum.s()).delay()
    assert three.get(timeout=WAIT_S) == 12
