"""``Task.replace`` and ``Task.add_to_chord`` on a real worker over Redis: a task turns into
a task, a chain, a group or a chord, the caller's result gets the final value under the
replaced task's id, links on either side of the replacement run, the rest of a chain
continues, a group or chord counts the replacement once, and nesting is counted."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from celeriac import Celery, chain, chord, group
from celeriac.canvas import Signature
from celeriac.errors import ImproperlyConfigured
from tests.support.redis_server import RedisServer
from tests.support.replace_tasks import ROUTES, ReplaceTasks, define_tasks
from tests.support.workers import WorkerProcess, start_celeriac_worker

WAIT_S = 30.0


@dataclass
class Stack:
    client: Celery
    t: ReplaceTasks
    worker: WorkerProcess


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer) -> Iterator[Stack]:
    redis_server.client(4).flushdb()
    redis_server.client(5).flushdb()
    broker_url, backend_url = redis_server.url(4), redis_server.url(5)
    worker = start_celeriac_worker(
        "replace_tasks",
        broker_url,
        "-P",
        "threads",
        "-c",
        "4",
        "-Q",
        "celery,replacer",
        backend_url=backend_url,
    )
    client = Celery("replace_client", broker=broker_url, backend=backend_url)
    client.conf.task_routes = ROUTES
    try:
        yield Stack(client, define_tasks(client), worker)
    finally:
        worker.stop()
        client.close()


def new_id() -> str:
    return str(uuid.uuid4())


# the four shapes
def test_replaced_by_a_task_gives_its_value_under_the_callers_id(stack: Stack) -> None:
    result = stack.t.to_task.delay(1)
    assert result.get(timeout=WAIT_S) == 2
    assert stack.client.AsyncResult(result.id).state == "SUCCESS"


def test_replaced_by_a_chain_gives_the_chains_last_value(stack: Stack) -> None:
    assert stack.t.to_chain.delay(1).get(timeout=WAIT_S) == 12


def test_replaced_by_a_group_gives_the_list_of_its_values(stack: Stack) -> None:
    assert stack.t.to_group.delay(1).get(timeout=WAIT_S) == [2, 3]


def test_replaced_by_a_chord_gives_the_body_value(stack: Stack) -> None:
    assert stack.t.to_chord.delay(1).get(timeout=WAIT_S) == 5


# links on both sides
@pytest.mark.parametrize(
    ("shape", "value"), [("to_task", 2), ("to_chain", 12), ("to_group", [2, 3]), ("to_chord", 5)]
)
def test_the_replaced_tasks_callback_gets_the_final_value(
    stack: Stack, shape: str, value: object
) -> None:
    t = stack.t
    callback_id = new_id()
    replaced = getattr(t, shape)
    result = replaced.apply_async((1,), link=t.identity.s().set(task_id=callback_id))
    assert result.get(timeout=WAIT_S) == value
    assert stack.client.AsyncResult(callback_id).get(timeout=WAIT_S) == value


def test_the_replaced_tasks_errback_runs_when_the_replacement_fails(stack: Stack) -> None:
    t = stack.t
    errback_id = new_id()
    result = t.to_failure.apply_async(("boom",), link_error=t.identity.s().set(task_id=errback_id))
    with pytest.raises(ValueError, match="boom"):
        result.get(timeout=WAIT_S)
    # sent with the failed task's id: the replaced task's own, which the replacement took
    assert stack.client.AsyncResult(errback_id).get(timeout=WAIT_S) == result.id


def test_the_replacements_own_links_run_too(stack: Stack) -> None:
    t = stack.t
    callback_id, errback_id, outer_id = new_id(), new_id(), new_id()
    result = t.to_linked.apply_async(
        (1, callback_id, errback_id), link=t.identity.s().set(task_id=outer_id)
    )
    assert result.get(timeout=WAIT_S) == 2
    assert stack.client.AsyncResult(callback_id).get(timeout=WAIT_S) == 2
    assert stack.client.AsyncResult(outer_id).get(timeout=WAIT_S) == 2
    assert stack.client.AsyncResult(errback_id).state == "PENDING"


# inside a canvas
def test_the_rest_of_a_chain_continues_after_the_replacement(stack: Stack) -> None:
    t = stack.t
    assert chain(t.to_task.s(1), t.add.s(100)).delay().get(timeout=WAIT_S) == 102
    longer = chain(t.add.s(1, 1), t.to_chain.s(), t.add.s(1000)).delay()
    assert longer.get(timeout=WAIT_S) == 1013
    assert longer.parent is not None and longer.parent.get(timeout=WAIT_S) == 13
    grouped = chain(t.to_group.s(1), t.tsum.s()).delay()
    assert grouped.get(timeout=WAIT_S) == 5


def test_group_members_replaced_by_each_shape(stack: Stack) -> None:
    t = stack.t
    result = group(t.to_task.s(1), t.to_chain.s(1), t.to_group.s(1), t.to_chord.s(1)).delay()
    assert result.get(timeout=WAIT_S) == [2, 12, [2, 3], 5]


def test_chord_header_counts_each_replacement_once(stack: Stack) -> None:
    t = stack.t
    header = [t.to_task.s(1), t.to_chain.s(1), t.to_group.s(1), t.to_chord.s(1)]
    result = chord(header)(t.tsum.s())
    assert result.get(timeout=WAIT_S) == 2 + 12 + 2 + 3 + 5


def test_replaced_task_nesting_is_counted(stack: Stack) -> None:
    t = stack.t
    assert t.nesting.delay().get(timeout=WAIT_S) == 0
    assert t.to_nesting.delay().get(timeout=WAIT_S) == 1
    assert t.to_replacer.delay().get(timeout=WAIT_S) == 2


# add_to_chord
def test_add_to_chord_makes_the_body_wait_for_the_added_parts(stack: Stack) -> None:
    t = stack.t
    result = chord([t.grow.s(1), t.grow.s(2), t.add.s(3, 3)])(t.tsum.s())
    assert result.get(timeout=WAIT_S) == 1 + 2 + 6 + 101 + 102
    lazy = chord([t.grow_lazy.s(1), t.add.s(3, 3)])(t.tsum.s())
    assert lazy.get(timeout=WAIT_S) == 1 + 6 + 201


# bad input and eager calls
def test_replace_with_a_non_signature_fails_that_task_with_a_clear_error(stack: Stack) -> None:
    result = stack.t.to_nothing.delay("not a signature")
    with pytest.raises(ImproperlyConfigured, match="take a signature"):
        result.get(timeout=WAIT_S)
    assert stack.t.to_task.delay(5).get(timeout=WAIT_S) == 6  # the worker goes on


def test_replace_outside_a_worker_raises_at_the_call(stack: Stack) -> None:
    with pytest.raises(ImproperlyConfigured, match="outside a worker"):
        stack.t.to_task(1)
    with pytest.raises(ValueError, match="not a member of any chord"):
        stack.t.grow(1)


def test_replace_in_an_eager_call_runs_the_replacement_here(stack: Stack) -> None:
    t = stack.t
    assert t.to_task.apply((1,)).get() == 2
    assert t.to_chain.apply((1,)).get() == 12


def test_on_replace_is_called_with_the_ready_replacement(stack: Stack) -> None:
    from celeriac import Task

    seen: list[str] = []

    class Watching(Task):
        def on_replace(self, sig: Signature) -> Any:
            seen.append(sig.task)
            return super().on_replace(sig)

    @stack.client.task(name="rep.watched", bind=True, base=Watching)
    def watched(self: Any, x: int) -> Any:
        return self.replace(stack.t.add.s(x, 1))

    assert watched.apply((1,)).get() == 2
    assert seen == ["rep.add"]
