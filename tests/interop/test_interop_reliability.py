"""Reliability across the two implementations, with the real Celery 5 as the peer:

- a Celery worker restores the unacked messages of a SIGKILLed celeriac worker (kombu's
  ``restore_visible`` from ``unacked`` / ``unacked_index``, after its visibility_timeout), and a
  celeriac worker restores a SIGKILLed Celery worker's (the visibility-timeout sweep: a Celery
  worker has no celeriac heartbeat to judge it by);
- retries cross both ways: a task retried by one side runs on the other with the ``retries``
  header intact, and back;
- revokes cross both ways: Celery's broadcast from either client stops the other's worker.

Tasks: tests/support/interop_rel_tasks.py (celeriac) and celery_rel_tasks.py (Celery) define the
same names; each run records which side ran it and its retries header.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable, Iterator

import celery
import pytest
import redis

import celeriac
from celeriac import states
from tests.interop.peers import CELERY_WORKER_FLAGS
from tests.support.workers import WorkerProcess, start_celeriac_worker, start_celery_worker

VISIBILITY_S = "2"  # small, so the visibility-timeout restore happens within the test
WAIT_S = 30.0


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s}s waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def workers(redis_url: str, backend_url: str) -> Iterator[Callable[..., WorkerProcess]]:
    """start("celeriac" | "celery", *args): a worker of either side; all stopped at teardown."""
    started: list[WorkerProcess] = []
    env = {"TEST_VISIBILITY_TIMEOUT": VISIBILITY_S}

    def start(side: str, *args: str) -> WorkerProcess:
        if side == "celeriac":
            worker = start_celeriac_worker(
                "interop_rel_tasks", redis_url, *args, backend_url=backend_url, env_extra=env
            )
        else:
            worker = start_celery_worker(
                "celery_rel_tasks",
                redis_url,
                *args,
                *CELERY_WORKER_FLAGS,
                backend_url=backend_url,
                env_extra=env,
            )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def runs(r: redis.Redis, key: str) -> list[tuple[str, int]]:
    """(side, retries header) of every run of *key*, in order."""
    out = []
    for line in r.lrange(f"runs:{key}", 0, -1):
        side, retries, _pid = line.decode().split()
        out.append((side, int(retries)))
    return out


def kill(worker: WorkerProcess) -> None:
    """SIGKILL the worker and every process under it, as a power loss would."""
    kids = worker.children()
    worker.signal(signal.SIGKILL)
    for kid in kids:
        kid.kill()
    worker.wait(10)


# restoring a crashed peer's unacked messages
def test_celery_worker_restores_a_killed_celeriac_workers_unacked_message(
    workers: Callable[..., WorkerProcess],
    celeriac_client: celeriac.Celery,
    r: redis.Redis,
) -> None:
    key = uuid.uuid4().hex[:8]
    victim = workers("celeriac", "-P", "prefork", "-c", "1")
    result = celeriac_client.send_task("irel.record", (key, 60.0))
    wait_until(lambda: runs(r, key) == [("celeriac", 0)], "celeriac to start the task")
    assert r.hlen("unacked") == 1  # held, unacked, in kombu's own layout
    kill(victim)
    workers("celery", "-P", "solo")
    wait_until(lambda: len(runs(r, key)) == 2, "Celery to restore and run the task")
    assert runs(r, key)[1] == ("celery", 0)
    # Celery now runs it for 60 s; it holds the message unacked (late ack) meanwhile
    assert r.llen("celery") == 0
    assert result.state in (states.PENDING, states.STARTED)


def test_celeriac_worker_restores_a_killed_celery_workers_unacked_message(
    workers: Callable[..., WorkerProcess],
    celery_client: celery.Celery,
    r: redis.Redis,
) -> None:
    key = uuid.uuid4().hex[:8]
    victim = workers("celery", "-P", "solo")
    result = celery_client.send_task("irel.record", (key, 60.0))
    wait_until(lambda: runs(r, key) == [("celery", 0)], "Celery to start the task")
    assert r.hlen("unacked") == 1
    kill(victim)
    workers("celeriac", "-P", "solo")
    wait_until(lambda: len(runs(r, key)) == 2, "celeriac to restore and run the task")
    assert runs(r, key)[1] == ("celeriac", 0)
    assert result.id


def test_a_message_restored_by_celery_finishes_and_is_read_by_either_client(
    workers: Callable[..., WorkerProcess],
    celeriac_client: celeriac.Celery,
    celery_client: celery.Celery,
    r: redis.Redis,
) -> None:
    key = uuid.uuid4().hex[:8]
    victim = workers("celeriac", "-P", "solo")
    result = celeriac_client.send_task("irel.record", (key, 3.0))
    wait_until(lambda: runs(r, key) == [("celeriac", 0)], "celeriac to start the task")
    kill(victim)
    workers("celery", "-P", "solo")
    assert result.get(timeout=WAIT_S) == "celery"
    assert celery_client.AsyncResult(result.id).get(timeout=WAIT_S) == "celery"
    wait_until(lambda: r.hlen("unacked") == 0, "the restored message to be acked")


# retries across
def test_retries_cross_both_ways_with_the_retries_header_intact(
    workers: Callable[..., WorkerProcess],
    celeriac_client: celeriac.Celery,
    r: redis.Redis,
) -> None:
    workers("celeriac", "-P", "solo", "-Q", "to_celeriac")
    workers("celery", "-P", "solo", "-Q", "to_celery")
    key = uuid.uuid4().hex[:8]
    result = celeriac_client.send_task("irel.pingpong", (key, 3), queue="to_celeriac")
    # celeriac runs retries=0 and retries to Celery's queue; Celery runs retries=1 and retries
    # back; celeriac runs retries=2; Celery runs retries=3 and returns
    expected = [("celeriac", 0), ("celery", 1), ("celeriac", 2), ("celery", 3)]
    value = result.get(timeout=WAIT_S)
    assert runs(r, key) == expected
    assert [line.split()[:2] for line in value] == [[s, str(n)] for s, n in expected]
    assert result.state == states.SUCCESS


def test_retry_state_written_by_either_side_is_read_by_the_other(
    workers: Callable[..., WorkerProcess],
    celery_client: celery.Celery,
    celeriac_client: celeriac.Celery,
    r: redis.Redis,
) -> None:
    workers("celery", "-P", "solo", "-Q", "to_celery")
    key = uuid.uuid4().hex[:8]
    # Celery runs it and retries onto celeriac's queue, where no worker is yet: state RETRY
    sent = celery_client.send_task("irel.pingpong", (key, 2), queue="to_celery")
    result = celeriac_client.AsyncResult(sent.id)
    wait_until(lambda: result.state == states.RETRY, "state RETRY stored by Celery")
    workers("celeriac", "-P", "solo", "-Q", "to_celeriac")
    assert [line.split()[:2] for line in sent.get(timeout=WAIT_S)] == [
        ["celery", "0"],
        ["celeriac", "1"],
        ["celery", "2"],
    ]


# revokes across
def test_revoke_from_a_celeriac_client_stops_a_celery_worker_running_it(
    workers: Callable[..., WorkerProcess],
    celeriac_client: celeriac.Celery,
    r: redis.Redis,
) -> None:
    workers("celery", "-P", "solo")
    key = uuid.uuid4().hex[:8]
    result = celeriac_client.send_task("irel.record", (key,), countdown=3)
    wait_until(lambda: r.hlen("unacked") == 1, "Celery to take the ETA task")
    celeriac_client.control.revoke(result.id)
    wait_until(lambda: result.state == states.REVOKED, "Celery to mark it REVOKED")
    assert runs(r, key) == []


def test_revoke_from_a_celery_client_stops_a_celeriac_worker_running_it(
    workers: Callable[..., WorkerProcess],
    celery_client: celery.Celery,
    r: redis.Redis,
) -> None:
    workers("celeriac", "-P", "solo")
    key = uuid.uuid4().hex[:8]
    sent = celery_client.send_task("irel.record", (key,), countdown=3)
    wait_until(lambda: r.zcard("celeriac.delayed") == 1, "celeriac to park the ETA task")
    celery_client.control.revoke(sent.id)
    wait_until(lambda: sent.state == states.REVOKED, "celeriac to mark it REVOKED")
    assert runs(r, key) == []


def test_revoke_terminate_from_celery_stops_a_running_celeriac_prefork_task(
    workers: Callable[..., WorkerProcess],
    celery_client: celery.Celery,
    r: redis.Redis,
) -> None:
    worker = workers("celeriac", "-P", "prefork", "-c", "1")
    key = uuid.uuid4().hex[:8]
    sent = celery_client.send_task("irel.record", (key, 60.0))
    wait_until(lambda: runs(r, key) == [("celeriac", 0)], "celeriac to start the task")
    celery_client.control.revoke(sent.id, terminate=True, signal="SIGKILL")
    try:
        wait_until(lambda: sent.state == states.REVOKED, "the running task to be terminated")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{worker.log()}") from None
    wait_until(lambda: r.hlen("unacked") == 0, "the terminated task to be acked")
    assert len(runs(r, key)) == 1
