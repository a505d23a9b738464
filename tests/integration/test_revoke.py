"""Revoke: Celery's broadcast and our stored list, obeyed by celeriac workers; terminate in
prefork; expired tasks are not run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis

from celeriac import Celery, TaskRevokedError, pidbox
from tests.support.waiting import wait_until
from tests.support.workers import WorkerProcess

Factory = Callable[..., WorkerProcess]


@pytest.fixture
def client(redis_url: str, backend_url: str) -> Celery:
    return Celery("client", broker=redis_url, backend=backend_url)


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def test_revoked_task_is_not_run_and_stored_revoked(
    worker_factory: Factory, client: Celery, r: redis.Redis
) -> None:
    worker_factory("reliable_tasks", "-P", "solo")
    blocker = client.send_task("rel.wait", ("block", 1.0))
    victim = client.send_task("rel.count", ("victim",))
    victim.revoke()
    assert blocker.get(timeout=10) == "finished"
    with pytest.raises(TaskRevokedError):
        victim.get(timeout=10)
    assert victim.state == "REVOKED"
    assert r.get("runs:victim") is None


def test_revoked_eta_task_is_discarded_when_due(
    worker_factory: Factory, client: Celery, r: redis.Redis
) -> None:
    worker_factory("reliable_tasks", "-P", "solo")
    due = datetime.now(timezone.utc) + timedelta(seconds=1.5)
    result = client.send_task("rel.count", ("eta-revoked",), eta=due)
    wait_until(lambda: r.zcard("celeriac.delayed") == 1, 10, "the task to be parked")
    client.control.revoke(result.id)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=10)
    assert r.get("runs:eta-revoked") is None


def test_terminate_stops_a_running_task_in_prefork(
    worker_factory: Factory, client: Celery, r: redis.Redis
) -> None:
    worker_factory("reliable_tasks", "-P", "prefork", "-c", "1")
    result = client.send_task("rel.wait", ("term", 30.0))
    wait_until(lambda: r.llen("started:term") == 1, 10, "the task to start")
    result.revoke(terminate=True)
    with pytest.raises(TaskRevokedError, match="terminated"):
        result.get(timeout=10)
    assert client.send_task("rel.count", ("after",)).get(timeout=10) == 1


def test_expired_task_is_not_run_and_stored_revoked(
    worker_factory: Factory, client: Celery, r: redis.Redis
) -> None:
    expired = client.send_task("rel.count", ("expired",), expires=-1)
    worker_factory("reliable_tasks", "-P", "solo")
    with pytest.raises(TaskRevokedError, match="expired"):
        expired.get(timeout=10)
    assert r.get("runs:expired") is None


def test_ping_and_inspect_reach_celeriac_workers(
    worker_factory: Factory, client: Celery, r: redis.Redis
) -> None:
    worker_factory("reliable_tasks", "-P", "solo", "-n", "pinged@%h")
    # "ready." is logged only once the worker hears broadcasts: a ping sent now is answered
    assert dict(r.pubsub_numsub(pidbox.channel(0))) == {pidbox.channel(0).encode(): 1}
    replies = client.control.ping(timeout=2)
    assert any(
        name.startswith("pinged@") and answer == {"ok": "pong"}
        for reply in replies
        for name, answer in reply.items()
    )
    registered = client.control.inspect(timeout=2).registered() or {}
    assert any("rel.count" in tasks for tasks in registered.values())


def test_statedb_keeps_revoked_ids_across_a_restart(
    worker_factory: Factory, client: Celery, r: redis.Redis, tmp_path: Path
) -> None:
    state = tmp_path / "worker.state"
    first = worker_factory("reliable_tasks", "-P", "solo", "--statedb", str(state))
    client.control.revoke("some-task-id")
    first.stop()
    assert b"some-task-id" in state.read_bytes()
    r.delete("celeriac.revoked", "celeriac.revoked.version")
    worker_factory("reliable_tasks", "-P", "solo", "--statedb", str(state))
    wait_until(
        lambda: r.zscore("celeriac.revoked", "some-task-id") is not None,
        10,
        "the revoked id to be restored",
    )
