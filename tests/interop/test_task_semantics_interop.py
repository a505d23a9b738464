"""Task semantics across the wire: a real Celery client drives a celeriac worker and a Celery
worker side by side (the same task names, ``sem_ours`` and ``sem_celery`` queues) and both
must answer alike; a celeriac client reads what a Celery worker stores."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import celery
import celery.result
import pytest
import redis
from pydantic import BaseModel

import celeriac
from celeriac.result import result_from_tuple
from tests.interop.peers import CELERY_WORKER_FLAGS, release_celery_results
from tests.support.redis_server import RedisServer
from tests.support.workers import (
    TESTS_DIR,
    WorkerProcess,
    start_celeriac_worker,
    start_celery_worker,
    subprocess_env,
)

WAIT_S = 30.0
BROKER_DB, BACKEND_DB = 14, 15
OURS, THEIRS = "sem_ours", "sem_celery"


@dataclass
class Peers:
    celery_client: celery.Celery
    celeriac_client: celeriac.Celery
    ours: WorkerProcess
    theirs: WorkerProcess
    broker: redis.Redis
    broker_url: str
    backend_url: str

    def both(self, name: str, *args: Any, **options: Any) -> tuple[Any, Any]:
        """Send the same call from the Celery client to both workers; both results."""
        mine = self.celery_client.send_task(name, *args, queue=OURS, **options)
        celerys = self.celery_client.send_task(name, *args, queue=THEIRS, **options)
        return mine.get(timeout=WAIT_S), celerys.get(timeout=WAIT_S)


@pytest.fixture(scope="module")
def peers(redis_server: RedisServer) -> Iterator[Peers]:
    redis_server.client(BROKER_DB).flushdb()
    redis_server.client(BACKEND_DB).flushdb()
    broker_url, backend_url = redis_server.url(BROKER_DB), redis_server.url(BACKEND_DB)
    ours = start_celeriac_worker(
        "semantics_tasks",
        broker_url,
        "-P",
        "solo",
        "-Q",
        OURS,
        "-n",
        "ours@host",
        backend_url=backend_url,
        env_extra={"SEM_QUEUE": OURS},
    )
    try:
        theirs = start_celery_worker(
            "celery_semantics_tasks",
            broker_url,
            "-P",
            "solo",
            "-Q",
            THEIRS,
            "-n",
            "theirs@host",
            *CELERY_WORKER_FLAGS,
            backend_url=backend_url,
            env_extra={"SEM_QUEUE": THEIRS},
        )
    except BaseException:
        ours.stop()
        raise
    celery_client = celery.Celery(
        "sem_interop", broker=broker_url, backend=backend_url, set_as_current=False
    )
    celeriac_client = celeriac.Celery("sem_interop", broker=broker_url, backend=backend_url)
    try:
        yield Peers(
            celery_client,
            celeriac_client,
            ours,
            theirs,
            redis_server.client(BROKER_DB),
            broker_url,
            backend_url,
        )
    finally:
        release_celery_results(celery_client)
        celery_client.close()
        celeriac_client.close()
        ours.stop()
        theirs.stop()


SAME_FIELDS = [
    "args",
    "kwargs",
    "retries",
    "is_eager",
    "headers",
    "custom_attribute",
    "timelimit",
    "time_limit",
    "soft_time_limit",
    "called_directly",
    "replaced_task_nesting",
    "stamps",
    "argsrepr",
    "kwargsrepr",
    "group",
    "group_index",
    "parent_id",
    "chain",
    "chord",
    "callbacks",
    "errbacks",
    "shadow",
]


def _delivery_info(fields: dict[str, Any]) -> dict[str, Any]:
    info = dict(fields["delivery_info"])
    info.pop("queue", None)  # celeriac adds the queue it took the message from
    info.pop("routing_key")  # each worker's own queue
    return info


# request fields
def test_request_fields_match_a_celery_workers(peers: Peers) -> None:
    mine, celerys = peers.both(
        "sem.fields",
        (1,),
        {"b": 2},
        headers={"custom": "x"},
        priority=5,
        time_limit=30,
        soft_time_limit=20,
        expires=60,
    )
    assert {k: mine[k] for k in SAME_FIELDS} == {k: celerys[k] for k in SAME_FIELDS}
    assert _delivery_info(mine) == _delivery_info(celerys)
    assert set(celerys["properties"]) <= set(mine["properties"])
    assert mine["properties"]["priority"] == celerys["properties"]["priority"] == 5


def test_request_fields_without_options_match_a_celery_workers(peers: Peers) -> None:
    mine, celerys = peers.both("sem.fields")
    assert {k: mine[k] for k in SAME_FIELDS} == {k: celerys[k] for k in SAME_FIELDS}
    assert _delivery_info(mine) == _delivery_info(celerys)


# retry
def test_retry_keeps_headers_and_priority_like_a_celery_worker(peers: Peers) -> None:
    mine, celerys = peers.both("sem.retry_fields", headers={"custom": "kept"}, priority=6)
    for fields in (mine, celerys):
        assert fields["retries"] == 1
        assert fields["headers"] == {"custom": "kept"}
        assert fields["delivery_info"]["priority"] == 6


@pytest.mark.parametrize(
    ("name", "args", "kwargs"),
    [
        ("sem.retry_to_kwargs", (1, 2), {}),
        ("sem.retry_to_kwargs", (1,), {"y": 2}),
        ("sem.retry_to_args", (), {"x": 1, "y": 2}),
    ],
)
def test_retry_arguments_match_a_celery_worker(
    peers: Peers, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    mine, celerys = peers.both(name, args, kwargs)
    assert mine == celerys


# class-based tasks
def test_class_based_task_from_a_celery_client(peers: Peers) -> None:
    assert peers.both("sem.class_multiply", (6, 7)) == (42, 42)


# results that are results
def test_celery_client_follows_a_result_reference_stored_by_celeriac(peers: Peers) -> None:
    value = peers.celery_client.send_task("sem.returns_result", (2, 3), queue=OURS).get(
        timeout=WAIT_S
    )
    followed = celery.result.result_from_tuple(value, peers.celery_client)
    assert followed.get(timeout=WAIT_S) == 5


def test_celery_client_follows_a_group_reference_stored_by_celeriac(peers: Peers) -> None:
    value = peers.celery_client.send_task("sem.returns_group", (3,), queue=OURS).get(timeout=WAIT_S)
    followed = celery.result.result_from_tuple(value, peers.celery_client)
    assert isinstance(followed, celery.result.GroupResult)
    assert followed.get(timeout=WAIT_S) == [0, 2, 4]


def test_result_references_are_stored_alike_and_both_clients_follow_them(
    peers: Peers,
) -> None:
    mine, celerys = peers.both("sem.returns_group", (2,))
    assert len(mine) == len(celerys) == 2
    assert mine[1] is not None and len(mine[1]) == len(celerys[1]) == 2
    for value in (mine, celerys):
        followed = result_from_tuple(value, peers.celeriac_client)
        assert followed.get(timeout=WAIT_S) == [0, 2]


# errors
def test_reject_without_requeue_is_a_failure_as_on_a_celery_worker(peers: Peers) -> None:
    for queue in (OURS, THEIRS):
        result = peers.celery_client.send_task("sem.reject", ("no",), queue=queue)
        with pytest.raises(Exception) as caught:
            result.get(timeout=WAIT_S)
        assert type(caught.value).__name__ == "Reject"
        assert result.state == "FAILURE"


# pydantic tasks
def test_pydantic_task_from_a_celery_client(peers: Peers) -> None:
    assert peers.both("sem.pyd_shift", ({"x": 1, "y": 2}, 3)) == ({"x": 4, "y": 5},) * 2


class Point(BaseModel):
    x: int
    y: int


def test_celeriac_client_sends_a_model_a_celery_worker_validates(peers: Peers) -> None:
    @peers.celeriac_client.task(name="sem.pyd_shift", pydantic=True)
    def pyd_shift(point: Point, by: int) -> Point:
        raise AssertionError("runs on the Celery worker")

    result = pyd_shift.apply_async((Point(x=1, y=1), 1), queue=THEIRS)
    assert result.get(timeout=WAIT_S) == {"x": 2, "y": 2}


# custom remote-control commands
def test_celery_inspect_request_reaches_a_custom_inspect_command(peers: Peers) -> None:
    inspect = peers.celery_client.control.inspect(destination=["ours@host"], timeout=2.0)
    assert inspect._request("sem_where") == {
        "ours@host": {"hostname": "ours@host", "has_app": True}
    }


def test_celery_broadcast_reaches_a_custom_control_command(peers: Peers) -> None:
    replies = peers.celery_client.control.broadcast(
        "sem_bump", arguments={"n": 2}, destination=["ours@host"], reply=True, timeout=2.0
    )
    assert replies == [{"ours@host": {"ok": "bumped by 2"}}]


# revoking
def _state_becomes(app: celery.Celery, task_id: str, state: str) -> bool:
    """Whether the stored state becomes *state* within WAIT_S (read afresh each time)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if app.AsyncResult(task_id).state == state:
            return True
        time.sleep(0.02)
    return False


def test_revoke_of_a_task_the_other_worker_runs_marks_it_revoked_until_it_ends(
    peers: Peers,
) -> None:
    """One worker runs each task; the other (Celery's for ours, ours for Celery's) marks it
    REVOKED on the revoke unless it is known to have started; the one running it stores its
    outcome when it ends, as Celery does."""
    keys = {queue: (str(uuid.uuid4()), str(uuid.uuid4())) for queue in (OURS, THEIRS)}
    plain, tracked = {}, {}
    for queue, (key, tracked_key) in keys.items():
        plain[queue] = peers.celery_client.send_task("sem.block", (key,), queue=queue)
        tracked[queue] = peers.celery_client.send_task(
            "sem.block_tracked", (tracked_key,), queue=queue
        )
        for started in (key, tracked_key):  # solo workers: one at a time
            assert peers.broker.blpop([f"{started}:started"], timeout=WAIT_S) is not None
            if started == key:
                peers.celery_client.control.revoke(plain[queue].id)
                assert _state_becomes(peers.celery_client, plain[queue].id, "REVOKED")
                peers.broker.rpush(f"{key}:go", 1)
                assert _state_becomes(peers.celery_client, plain[queue].id, "SUCCESS")
        peers.celery_client.control.revoke(tracked[queue].id)
        peers.celery_client.control.ping(timeout=1.0)  # both handled the revoke before this
        assert peers.celery_client.AsyncResult(tracked[queue].id).state == "STARTED"
        peers.broker.rpush(f"{tracked_key}:go", 1)
        assert tracked[queue].get(timeout=WAIT_S) == "released"


def _celery_cli(peers: Peers, *args: str) -> Any:
    """Run Celery's CLI against the test's Redis; its ``--json`` answer."""
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "celery_control_cli", *args, "--json"],
        env=subprocess_env(peers.broker_url, peers.backend_url),
        cwd=str(TESTS_DIR / "support"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_celery_cli_inspect_and_control_reach_custom_commands(peers: Peers) -> None:
    where = _celery_cli(peers, "inspect", "sem_where", "-d", "ours@host", "-t", "2")
    assert where == {"ours@host": {"hostname": "ours@host", "has_app": True}}
    bump = _celery_cli(peers, "control", "sem_bump", "4", "-d", "ours@host", "-t", "2")
    assert bump == [{"ours@host": {"ok": "bumped by 4"}}]
