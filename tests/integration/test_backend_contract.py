"""What every result backend promises, written once and run on memory://, SQLite and Redis."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson
import pytest

from celeriac import states
from celeriac.backends import Backend, build_meta, make_backend
from celeriac.config import Settings
from celeriac.errors import BackendError, TimeoutError

FORK = multiprocessing.get_context("fork")

OpenBackend = Callable[[], Backend]


@pytest.fixture(params=["memory", "sqlite", "redis", "redis-resp2"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    """redis-resp2: Redis, waiting for results the way it must before Redis 6 (no RESP3)."""
    return str(request.param)


@pytest.fixture
def backend_url_for(backend_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend_kind == "memory":
        return f"memory://contract-{uuid.uuid4().hex}"
    if backend_kind == "sqlite":
        return f"sqlite:///{tmp_path}/results.sqlite3"
    return str(request.getfixturevalue("backend_url"))


@pytest.fixture
def open_backend(backend_url_for: str, backend_kind: str) -> Iterator[OpenBackend]:
    """Open backends on the test's URL (each its own connection); all closed at teardown."""
    opened: list[Backend] = []

    def open_() -> Backend:
        backend = make_backend(backend_url_for, Settings(), client_name="contract")
        if backend_kind == "redis-resp2":
            backend._no_resp3 = True  # type: ignore[attr-defined]
        opened.append(backend)
        return backend

    yield open_
    for backend in opened:
        backend.close()


@pytest.fixture
def backend(open_backend: OpenBackend) -> Backend:
    return open_backend()


def success(task_id: str, value: Any = 8) -> dict[str, Any]:
    place = {"hostname": "celery@test", "pid": 1234, "pool": "prefork"}
    return build_meta(task_id, states.SUCCESS, value, place=place)


def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Poll *condition* until true or *timeout_s* passes (for time-driven behaviour: expiry)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.05)
    return True


def test_unknown_task_has_no_meta(backend: Backend) -> None:
    assert backend.get_meta("never-stored") is None


def test_stored_meta_reads_back_unchanged(backend: Backend) -> None:
    meta = success("t1", {"nested": [1, 2.5, "x", None]})
    backend.store("t1", meta, None)
    assert backend.get_meta("t1") == meta


def test_a_later_state_replaces_the_earlier_one(backend: Backend) -> None:
    meta = success("t1")
    backend.store("t1", build_meta("t1", states.STARTED, {"pid": 1}), None)
    backend.store("t1", meta, None)
    assert backend.get_meta("t1") == meta


def test_results_are_visible_to_another_connection(open_backend: OpenBackend) -> None:
    meta = success("t1")
    open_backend().store("t1", meta, None)
    assert open_backend().get_meta("t1") == meta


def test_wait_for_returns_a_result_stored_before_it_was_called(backend: Backend) -> None:
    meta = success("t1")
    backend.store("t1", meta, None)
    assert backend.wait_for("t1", 5, 0.5) == meta


def test_wait_for_wakes_promptly_when_the_result_is_stored(open_backend: OpenBackend) -> None:
    waiting, storing = open_backend(), open_backend()
    got: list[dict[str, Any]] = []
    waiter = threading.Thread(target=lambda: got.append(waiting.wait_for("t1", 30, 0.5)))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive(), "wait_for returned before anything was stored"
    meta = success("t1")
    storing.store("t1", meta, None)
    waiter.join(5)
    assert (waiter.is_alive(), got) == (False, [meta])


def test_wait_for_ignores_states_that_are_not_ready(backend: Backend) -> None:
    backend.store("t1", build_meta("t1", states.STARTED, {"pid": 1}), None)
    with pytest.raises(TimeoutError):
        backend.wait_for("t1", 0.3, 0.05)


def test_wait_for_raises_timeout_when_nothing_arrives(backend: Backend) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="not ready in time"):
        backend.wait_for("never-stored", 0.3, 0.05)
    assert time.monotonic() - started >= 0.28


def test_forget_removes_the_result(backend: Backend) -> None:
    backend.store("t1", success("t1"), None)
    backend.forget("t1")
    assert backend.get_meta("t1") is None


def test_storing_with_an_expiry_emits_no_warning(
    request: pytest.FixtureRequest, backend_url_for: str, backend: Backend
) -> None:
    backend.store("t1", success("t1"), 60)  # filterwarnings = error turns a warning into a raise


# the setex warning is pinned above; here only expiry itself is under test
IGNORE_SETEX = pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")


@IGNORE_SETEX
def test_result_is_kept_until_it_expires(backend: Backend) -> None:
    backend.store("t1", success("t1"), 60)
    assert backend.get_meta("t1") is not None


@IGNORE_SETEX
def test_expired_result_is_no_longer_returned(backend: Backend) -> None:
    backend.store("t1", success("t1"), 1)
    assert wait_until(lambda: backend.get_meta("t1") is None, timeout_s=5)


def _store_in_child(url: str, go: Any, task_id: str) -> None:
    backend = make_backend(url, Settings(), client_name="storer")
    go.wait(10)
    backend.store(task_id, success(task_id), None)
    backend.close()


def _wait_in_child(url: str, ready: Any, out: Connection) -> None:
    backend = make_backend(url, Settings(), client_name="waiter")
    backend.get_meta("warm-up")
    ready.set()
    meta = backend.wait_for("t1", 30, 0.5)
    out.send((time.time(), meta["result"]))
    backend.close()


@pytest.mark.brokers("sqlite", "redis")
def test_wait_for_in_another_process_wakes_when_the_result_is_stored(
    backend_url_for: str, backend: Backend
) -> None:
    ready = FORK.Event()
    reader, writer = FORK.Pipe(duplex=False)
    child = FORK.Process(target=_wait_in_child, args=(backend_url_for, ready, writer), daemon=True)
    child.start()
    try:
        assert ready.wait(10)
        stored_at = time.time()
        backend.store("t1", success("t1"), None)
        assert reader.poll(10), "the waiting process never woke"
        woke_at, value = reader.recv()
    finally:
        if child.is_alive():
            child.kill()
        child.join(10)
    assert value == 8
    assert woke_at - stored_at < 2.0


@pytest.mark.brokers("sqlite", "redis")
def test_result_stored_by_another_process_is_read_here(
    backend_url_for: str, backend: Backend
) -> None:
    go = FORK.Event()
    child = FORK.Process(target=_store_in_child, args=(backend_url_for, go, "t1"), daemon=True)
    child.start()
    try:
        go.set()
        meta = backend.wait_for("t1", 10, 0.5)
    finally:
        if child.is_alive():
            child.kill()
        child.join(10)
    assert meta["result"] == 8


# Redis on RESP3: the subscription and the read share one connection and one write
def test_a_wait_stays_subscribed_until_the_next_one_which_unsubscribes_it(
    backend_url: str,
) -> None:
    backend = make_backend(backend_url, Settings(), client_name="resp3")
    client = backend.client  # type: ignore[attr-defined]
    try:
        for task_id in ("first", "second"):
            backend.store(task_id, success(task_id), None)
            assert backend.wait_for(task_id, 5, 0.5)["result"] == 8
        subscribers = dict(
            client.pubsub_numsub("celery-task-meta-first", "celery-task-meta-second")
        )
        assert subscribers == {b"celery-task-meta-first": 0, b"celery-task-meta-second": 1}
        waiters = [c for c in client.client_list() if c["name"] == "resp3:wait"]
        assert [c["resp"] for c in waiters] == ["3"]  # one connection, RESP3
    finally:
        backend.close()


def test_a_message_published_between_subscribe_and_read_is_not_missed(
    backend_url: str,
) -> None:
    """The result is published (not stored) while the waiter is subscribed: the message
    alone must answer, since the key read finds nothing."""
    backend = make_backend(backend_url, Settings(), client_name="resp3")
    client = backend.client  # type: ignore[attr-defined]
    meta = success("only-published")
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(backend.wait_for("only-published", 10)))
    waiter.start()
    try:
        deadline = time.monotonic() + 10
        while not dict(client.pubsub_numsub("celery-task-meta-only-published")).get(
            b"celery-task-meta-only-published"
        ):
            assert time.monotonic() < deadline, "the waiter never subscribed"
            threading.Event().wait(0.01)
        client.publish("celery-task-meta-only-published", orjson.dumps(meta))
        waiter.join(10)
        assert got and got[0]["result"] == 8
    finally:
        waiter.join(10)
        backend.close()


def test_a_wait_that_fails_mid_answer_leaves_nothing_for_the_next_wait(
    backend_url: str,
) -> None:
    """A corrupt message on a channel still subscribed from the last wait is read before
    that wait's key read answers; the error must not leave that answer for the next wait."""
    backend = make_backend(backend_url, Settings(), client_name="resp3")
    client = backend.client  # type: ignore[attr-defined]
    try:
        backend.store("k1", success("k1", "one"), None)
        assert backend.wait_for("k1", 5)["result"] == "one"  # stays subscribed to k1
        client.publish("celery-task-meta-k1", b"not json")
        with pytest.raises(BackendError, match="not JSON"):
            backend.wait_for("k1", 5)
        backend.store("k2", success("k2", "two"), None)
        assert backend.wait_for("k2", 5)["result"] == "two"
    finally:
        backend.close()
