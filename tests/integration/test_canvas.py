"""Workflows on real worker processes, over Redis and over the embedded SQLite broker and
backend: chains pass results along, groups and chords gather them in order, failures
reach the chord body as a ChordError, callbacks and errbacks get what Celery gives them,
and a chord survives its worker being SIGKILLed."""

from __future__ import annotations

import signal
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from celeriac import AsyncResult, Celery, GroupResult, chain, chord, group
from celeriac.errors import ChordError
from tests.support.canvas_tasks import CanvasTasks, define_tasks
from tests.support.redis_server import RedisServer
from tests.support.workers import WorkerProcess, start_celeriac_worker

WAIT_S = 30.0
# the chord counter keys of the wire spec (§8); .c is the claim marker, "done" once finished
COUNTER_SUFFIXES = (".j", ".t", ".s", ".d")


@dataclass
class Stack:
    """A broker and backend, one prefork worker on them, and a client with the tasks."""

    kind: str
    broker_url: str
    backend_url: str
    client: Celery
    t: CanvasTasks
    worker: WorkerProcess
    results_redis: redis.Redis | None
    sqlite_path: Path | None

    def result(self, task_id: str) -> AsyncResult:
        return self.client.AsyncResult(task_id)


def urls_for(kind: str, redis_server: RedisServer, tmp: Path) -> tuple[str, str]:
    if kind == "redis":
        redis_server.client(2).flushdb()
        redis_server.client(3).flushdb()
        return redis_server.url(2), redis_server.url(3)
    url = f"sqlite:///{tmp / 'celeriac.sqlite3'}"
    return url, url


@pytest.fixture(scope="module", params=["redis", "sqlite"])
def stack(
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    kind: str = request.param
    tmp = tmp_path_factory.mktemp(f"canvas-{kind}")
    broker_url, backend_url = urls_for(kind, redis_server, tmp)
    worker = start_celeriac_worker(
        "canvas_tasks", broker_url, "-P", "prefork", "-c", "2", backend_url=backend_url
    )
    client = Celery("canvas_client", broker=broker_url, backend=backend_url)
    try:
        yield Stack(
            kind,
            broker_url,
            backend_url,
            client,
            define_tasks(client),
            worker,
            redis_server.client(3) if kind == "redis" else None,
            tmp / "celeriac.sqlite3" if kind == "sqlite" else None,
        )
    finally:
        worker.stop()
        client.close()


def new_id() -> str:
    return str(uuid.uuid4())


def leftover_chord_state(stack: Stack, group_id: str) -> dict[str, object]:
    """What the chord join still keeps for *group_id*: Redis keys found with SCAN, or
    the SQLite chord part rows."""
    if stack.results_redis is not None:
        found: dict[str, object] = {}
        for key in stack.results_redis.scan_iter(match=f"celery-taskset-meta-{group_id}*"):
            name = key.decode() if isinstance(key, bytes) else str(key)
            found[name] = "key"
        return found
    assert stack.sqlite_path is not None
    with sqlite3.connect(stack.sqlite_path) as conn:
        rows = conn.execute(
            "SELECT COUNT(*) FROM celeriac_chord_part WHERE group_id = ?", (group_id,)
        ).fetchone()
        size = conn.execute(
            "SELECT size FROM celeriac_chord WHERE group_id = ?", (group_id,)
        ).fetchone()
    left: dict[str, object] = {}
    if rows[0]:
        left["parts"] = rows[0]
    if size is not None and size[0] is not None:
        left["size"] = size[0]
    return left


def assert_no_counter_left(stack: Stack, group_id: str | None) -> None:
    assert group_id
    left = leftover_chord_state(stack, group_id)
    if stack.results_redis is None:
        assert left == {}
        return
    counters = {key for key in left if key.endswith(COUNTER_SUFFIXES)}
    assert counters == set(), f"chord counter keys left behind: {sorted(counters)}"
    # only Celery 5.7's short-lived "done" marker may stay, so late duplicates never count
    claim = f"celery-taskset-meta-{group_id}.c"
    assert set(left) <= {claim}
    if claim in left:
        assert stack.results_redis.get(claim) == b"done"
        assert 0 < stack.results_redis.ttl(claim) <= 300


# chains
def test_chain_of_three_passes_each_result_to_the_next(stack: Stack) -> None:
    t = stack.t
    result = chain(t.add.s(1, 2), t.add.s(10), t.mul.s(3)).apply_async()
    assert result.get(timeout=WAIT_S) == 39
    assert result.parent is not None and result.parent.get(timeout=WAIT_S) == 13
    assert result.parent.parent is not None and result.parent.parent.get(timeout=WAIT_S) == 3


def test_pipe_operator_builds_the_same_chain(stack: Stack) -> None:
    t = stack.t
    result = (t.add.s(1, 2) | t.add.s(10) | t.mul.s(3)).delay()
    assert result.get(timeout=WAIT_S) == 39


def test_immutable_step_ignores_the_previous_result(stack: Stack) -> None:
    t = stack.t
    result = (t.add.s(1, 2) | t.add.si(5, 5) | t.add.s(1)).delay()
    assert result.get(timeout=WAIT_S) == 11
    assert result.parent is not None and result.parent.get(timeout=WAIT_S) == 10


def test_chain_step_after_a_failure_stores_the_same_failure(stack: Stack) -> None:
    t = stack.t
    result = (t.add.s(1, 2) | t.fail.si("mid-chain") | t.add.s(1)).delay()
    with pytest.raises(ValueError, match="mid-chain"):
        result.get(timeout=WAIT_S)
    assert result.state == "FAILURE"


# groups
def test_group_of_100_returns_every_value_in_order(stack: Stack) -> None:
    t = stack.t
    result = group(t.add.s(i, i) for i in range(100)).apply_async()
    assert isinstance(result, GroupResult)
    assert result.get(timeout=WAIT_S) == [2 * i for i in range(100)]
    assert result.ready()
    assert result.successful()
    assert result.completed_count() == 100


def test_saved_group_result_is_restored_by_id(stack: Stack) -> None:
    t = stack.t
    result = group(t.add.s(i, 1) for i in range(5)).apply_async()
    result.save()
    restored = GroupResult.restore(result.id, app=stack.client)
    assert restored is not None
    assert [r.id for r in restored.results] == [r.id for r in result.results]
    assert restored.get(timeout=WAIT_S) == [1, 2, 3, 4, 5]
    restored.delete()
    assert GroupResult.restore(result.id, app=stack.client) is None


def test_group_of_chains_runs_each_chain(stack: Stack) -> None:
    t = stack.t
    result = group(t.add.s(i, 1) | t.mul.s(10) for i in range(4)).apply_async()
    assert result.get(timeout=WAIT_S) == [10, 20, 30, 40]


# chords
def test_chord_of_100_sums_every_header_result_and_leaves_no_counter(stack: Stack) -> None:
    t = stack.t
    result = chord(t.add.s(i, i) for i in range(100))(t.tsum.s())
    assert result.get(timeout=WAIT_S) == sum(2 * i for i in range(100))
    header = result.parent
    assert isinstance(header, GroupResult) and len(header) == 100
    assert header.completed_count() == 100
    assert_no_counter_left(stack, header.id)


def test_group_piped_into_a_task_is_a_chord(stack: Stack) -> None:
    t = stack.t
    workflow = group(t.add.s(i, 0) for i in range(10)) | t.tsum.s()
    assert isinstance(workflow, chord)
    assert workflow.delay().get(timeout=WAIT_S) == 45


def test_chain_holding_a_group_and_a_chord(stack: Stack) -> None:
    t = stack.t
    workflow = chain(
        t.add.s(1, 1),  # 2
        group(t.add.s(1), t.add.s(2), t.add.s(3)),  # [3, 4, 5]
        t.tsum.s(),  # 12
        chord([t.add.s(1), t.add.s(2)], t.tsum.s()),  # 13 + 14
        t.mul.s(2),
    )
    assert workflow.apply_async().get(timeout=WAIT_S) == 54


def test_failing_header_task_fails_the_body_with_a_chord_error_naming_it(stack: Stack) -> None:
    t = stack.t
    result = chord([t.add.s(1, 1), t.fail.s("in-chord"), t.add.s(2, 2)])(t.tsum.s())
    header = result.parent
    assert isinstance(header, GroupResult)
    failed_id = header.results[1].id
    with pytest.raises(ChordError) as raised:
        result.get(timeout=WAIT_S)
    assert f"Dependency {failed_id} raised ValueError('in-chord')" in str(raised.value)
    assert result.state == "FAILURE"
    # the other parts still finish, and then nothing of the join is left
    assert header.results[0].get(timeout=WAIT_S) == 2
    assert header.results[2].get(timeout=WAIT_S) == 4
    wait_until(lambda: not _counters(stack, header.id), "the last part to clean up")


def _counters(stack: Stack, group_id: str | None) -> set[str]:
    assert group_id
    left = leftover_chord_state(stack, group_id)
    return {key for key in left if not key.endswith(".c")}


def test_chord_body_link_error_runs_when_a_header_fails(stack: Stack) -> None:
    t = stack.t
    report_id = new_id()
    body = t.tsum.s().on_error(t.identity.s().set(task_id=report_id))
    result = chord([t.add.s(1, 1), t.fail.s("header")], body).apply_async()
    with pytest.raises(ChordError):
        result.get(timeout=WAIT_S)
    assert stack.result(report_id).get(timeout=WAIT_S) == result.id


# map, starmap, chunks
def test_map_calls_the_task_on_each_item(stack: Stack) -> None:
    assert stack.t.identity.map([1, "two", [3]]).delay().get(timeout=WAIT_S) == [1, "two", [3]]


def test_starmap_unpacks_each_item_as_arguments(stack: Stack) -> None:
    result = stack.t.add.starmap([(1, 2), (3, 4), (5, 6)]).delay()
    assert result.get(timeout=WAIT_S) == [3, 7, 11]


def test_chunks_split_the_calls_into_groups_of_n(stack: Stack) -> None:
    result = stack.t.add.chunks(zip(range(10), range(10), strict=True), 3).apply_async()
    assert result.get(timeout=WAIT_S) == [[0, 2, 4], [6, 8, 10], [12, 14, 16], [18]]


# callbacks
def test_link_callback_gets_the_result_in_front_of_its_args(stack: Stack) -> None:
    t = stack.t
    callback_id = new_id()
    result = t.add.apply_async((2, 3), link=t.mul.s(10).set(task_id=callback_id))
    assert result.get(timeout=WAIT_S) == 5
    assert stack.result(callback_id).get(timeout=WAIT_S) == 50
    assert [child.id for child in result.children] == [callback_id]


def test_link_error_task_is_sent_with_the_failed_task_id(stack: Stack) -> None:
    t = stack.t
    errback_id = new_id()
    result = t.fail.apply_async(("broken",), link_error=t.identity.s().set(task_id=errback_id))
    with pytest.raises(ValueError, match="broken"):
        result.get(timeout=WAIT_S)
    assert stack.result(errback_id).get(timeout=WAIT_S) == result.id


def test_three_argument_errback_is_called_with_request_exception_and_traceback(
    stack: Stack,
) -> None:
    t = stack.t
    report_id = new_id()
    result = t.fail.apply_async(("broken",), link_error=t.on_error.s(report_id))
    with pytest.raises(ValueError):
        result.get(timeout=WAIT_S)
    assert stack.result(report_id).get(timeout=WAIT_S) == {
        "request_id": result.id,
        "request_task": "canvas.fail",
        "exc_type": "ValueError",
        "exc_args": ["broken"],
        "traceback_names_it": True,
    }


def test_errback_on_a_chain_runs_for_the_step_that_failed(stack: Stack) -> None:
    t = stack.t
    errback_id = new_id()
    workflow = t.add.s(1, 1) | t.fail.s() | t.add.s(1)
    result = workflow.on_error(t.identity.s().set(task_id=errback_id)).delay()
    with pytest.raises(ValueError):
        result.get(timeout=WAIT_S)
    failed_step = result.parent
    assert failed_step is not None
    assert stack.result(errback_id).get(timeout=WAIT_S) == failed_step.id


# result graph
def test_children_and_collect_walk_what_a_task_sent(stack: Stack) -> None:
    result = stack.t.spawn.delay(3)
    assert result.get(timeout=WAIT_S) == 3
    children = result.children
    assert len(children) == 3
    collected = list(result.collect(timeout=WAIT_S))
    assert collected[0] == (result, 3)
    assert sorted(value for _, value in collected[1:]) == [0, 2, 4]


def test_chain_results_link_back_through_parent_and_children(stack: Stack) -> None:
    t = stack.t
    result = (t.add.s(1, 1) | t.add.s(1) | t.add.s(1)).delay()
    assert result.get(timeout=WAIT_S) == 4
    first = result.parent.parent
    assert first is not None and first.parent is None
    second = first.children
    assert [child.id for child in second] == [result.parent.id]
    assert [value for _, value in first.collect(timeout=WAIT_S)] == [2, 3, 4]


# a worker killed in the middle of a chord
def test_chord_completes_after_its_prefork_worker_is_sigkilled(
    stack: Stack, tmp_path: Path
) -> None:
    env = {"TEST_WORKER_DEAD_AFTER": "2"}
    victim = start_celeriac_worker(
        "canvas_tasks",
        stack.broker_url,
        "-P",
        "prefork",
        "-c",
        "2",
        "-Q",
        "chordkill",
        "-n",
        "victim@%h",
        backend_url=stack.backend_url,
        env_extra=env,
    )
    survivor: WorkerProcess | None = None
    try:
        t = stack.t
        header = [t.slow_add.s(i, i, 0.1).set(queue="chordkill") for i in range(20)]
        result = chord(header)(t.tsum.s().set(queue="chordkill"))
        parts = result.parent
        assert isinstance(parts, GroupResult)
        wait_until(lambda: parts.completed_count() >= 4, "some header parts to finish")
        kids = victim.children()
        victim.signal(signal.SIGKILL)
        for kid in kids:
            kid.kill()
        victim.wait()
        assert not result.ready()
        survivor = start_celeriac_worker(
            "canvas_tasks",
            stack.broker_url,
            "-P",
            "prefork",
            "-c",
            "2",
            "-Q",
            "chordkill",
            "-n",
            "survivor@%h",
            backend_url=stack.backend_url,
            env_extra=env,
        )
        assert result.get(timeout=WAIT_S) == sum(2 * i for i in range(20))
        places = [r.place or {} for r in parts.results if isinstance(r, AsyncResult)]
        ran_on = {str(place.get("worker", "")).split("@")[0] for place in places}
        assert ran_on == {"victim", "survivor"}
        assert_no_counter_left(stack, parts.id)
    finally:
        victim.stop()
        if survivor is not None:
            survivor.stop()


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
