"""Remote control of celeriac workers by the real Celery: its ``celery inspect``/``celery
control`` programs and ``app.control`` read and change running celeriac workers (prefork,
solo), and get Celery's reply shapes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import celery
import pytest
import redis

from celeriac import Celery
from tests.support.workers import WorkerProcess

CELERY_BIN = str(Path(sys.executable).parent / "celery")
HOST = socket.gethostname()
ONE: dict[str, Any] = {"timeout": 5.0, "limit": 1}  # one worker answers: return then
ACTIVE_KEYS = {
    "id",
    "name",
    "args",
    "kwargs",
    "type",
    "hostname",
    "time_start",
    "acknowledged",
    "delivery_info",
    "worker_pid",
}


def wait_until(check: Callable[[], Any], timeout_s: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.05)


def celery_cli(redis_url: str, *args: str) -> Any:
    """Run the real ``celery`` program; its --json output, parsed."""
    done = subprocess.run(
        [CELERY_BIN, "-b", redis_url, *args, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return json.loads(done.stdout.strip().splitlines()[-1])


def by_node(replies: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for item in replies:
        merged.update(item)
    return merged


@pytest.fixture
def celery_app(redis_url: str, backend_url: str) -> Iterator[celery.Celery]:
    app = celery.Celery("rc_client", broker=redis_url, backend=backend_url, set_as_current=False)
    yield app
    app.close()


@pytest.fixture
def client(redis_url: str, backend_url: str) -> Iterator[Celery]:
    app = Celery("rc_sender", broker=redis_url, backend=backend_url)
    yield app
    app.close()


def child_pids(worker: WorkerProcess) -> list[int]:
    return sorted(p.pid for p in worker.children())


def test_celery_inspect_reads_celeriac_prefork_and_solo(
    worker_factory: Callable[..., WorkerProcess],
    redis_url: str,
    celery_app: celery.Celery,
    client: Celery,
    tmp_path: Path,
) -> None:
    go = str(tmp_path / "go")
    pf_node, solo_node = f"pf@{HOST}", f"solo@{HOST}"
    # sent before the solo worker starts: its first fetch takes all three, so it runs the
    # first and holds the others (one waits for its countdown)
    held = client.send_task("ctl.hold", args=[go], queue="so")
    waiting = client.send_task("ctl.add", args=[1, 2], queue="so")
    later = client.send_task("ctl.add", args=[3, 4], queue="so", countdown=120)
    pf = worker_factory("control_tasks", "-P", "prefork", "-c", "2", "-Q", "pf", "-n", "pf@%h")
    solo = worker_factory("control_tasks", "-P", "solo", "-Q", "so", "-n", "solo@%h")
    running = [client.send_task("ctl.hold", args=[go], queue="pf") for _ in range(2)]

    inspect = celery_app.control.inspect(timeout=5.0, limit=2)  # both answer: no wait
    active = wait_until(
        lambda: (a := inspect.active()) and len(a.get(pf_node, [])) == 2 and a[solo_node] and a,
        what="both holds running on pf and one on solo",
    )
    kids = child_pids(pf)
    assert len(kids) == 2
    for item in active[pf_node]:
        assert set(item) >= ACTIVE_KEYS
        assert item["name"] == "ctl.hold" and item["args"] == [go]
        assert item["worker_pid"] in kids and item["hostname"] == pf_node
        assert item["delivery_info"]["routing_key"] == "pf" and item["acknowledged"] is True
    assert sorted(i["id"] for i in active[pf_node]) == sorted(r.id for r in running)
    assert [i["id"] for i in active[solo_node]] == [held.id]
    assert active[solo_node][0]["worker_pid"] == solo.pid

    reserved = inspect.reserved()
    assert [i["id"] for i in reserved[solo_node]] == [waiting.id]
    assert reserved[solo_node][0]["args"] == [1, 2]
    scheduled = inspect.scheduled()[solo_node]
    assert [s["request"]["id"] for s in scheduled] == [later.id]
    assert set(scheduled[0]) == {"eta", "priority", "request"}
    assert scheduled[0]["eta"].startswith(time.strftime("%Y-"))
    query = inspect.query_task(held.id, waiting.id, later.id)[solo_node]
    assert {k: v[0] for k, v in query.items()} == {
        held.id: "active",
        waiting.id: "reserved",
        later.id: "scheduled",
    }

    # the real `celery inspect stats` program
    stats = celery_cli(redis_url, "inspect", "stats")
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    assert stats[pf_node]["pool"]["max-concurrency"] == 2
    assert sorted(stats[pf_node]["pool"]["processes"]) == kids
    assert stats[solo_node]["pool"]["processes"] == [solo.pid]
    assert stats[solo_node]["pool"]["max-concurrency"] == 1
    for node in (pf_node, solo_node):
        info = stats[node]
        keys = {"total", "rusage", "broker", "prefetch_count", "uptime", "clock", "pid"}
        assert keys <= set(info)
        assert info["broker"]["hostname"] == "127.0.0.1" and info["broker"]["port"] == port
        assert info["broker"]["transport"] == "redis"
        assert info["rusage"]["maxrss"] > 0
    assert stats[pf_node]["total"] == {"ctl.hold": 2}
    assert stats[pf_node]["pid"] == pf.pid

    Path(go).touch()
    for result in [*running, held, waiting]:
        result.get(timeout=15)
    totals = wait_until(
        lambda: (s := inspect.stats()) and s[solo_node]["total"].get("ctl.add") and s,
        what="the solo worker's counts",
    )
    assert totals[solo_node]["total"] == {"ctl.hold": 1, "ctl.add": 1}
    queues = celery_cli(redis_url, "inspect", "active_queues")
    assert [q["name"] for q in queues[pf_node]] == ["pf"]
    assert queues[pf_node][0]["exchange"]["type"] == "direct"
    registered = celery_cli(redis_url, "inspect", "registered")
    assert {"ctl.add", "ctl.hold"} <= set(registered[solo_node])


def test_pool_grow_and_shrink_prefork_and_why_solo_cannot(
    worker_factory: Callable[..., WorkerProcess], redis_url: str, celery_app: celery.Celery
) -> None:
    pf = worker_factory("control_tasks", "-P", "prefork", "-c", "2", "-Q", "pf", "-n", "pf@%h")
    worker_factory("control_tasks", "-P", "solo", "-Q", "so", "-n", "solo@%h")
    replies = celery_cli(redis_url, "control", "pool_grow", "1", "-d", f"solo@{HOST}")
    answer = by_node(replies)[f"solo@{HOST}"]
    assert "error" in answer and "solo pool" in answer["error"] and "prefork" in answer["error"]

    replies = celery_cli(redis_url, "control", "pool_grow", "2", "-d", f"pf@{HOST}")
    assert by_node(replies) == {f"pf@{HOST}": {"ok": "pool will grow"}}
    wait_until(lambda: len(child_pids(pf)) == 4, what="four children")
    inspect = celery_app.control.inspect(timeout=5.0, destination=[f"pf@{HOST}"], limit=1)
    stats = wait_until(
        lambda: (s := inspect.stats()) and len(s[f"pf@{HOST}"]["pool"]["processes"]) == 4 and s
    )
    assert sorted(stats[f"pf@{HOST}"]["pool"]["processes"]) == child_pids(pf)
    assert stats[f"pf@{HOST}"]["pool"]["max-concurrency"] == 4

    reply = celery_app.control.pool_shrink(3, destination=[f"pf@{HOST}"], reply=True, **ONE)
    assert by_node(reply) == {f"pf@{HOST}": {"ok": "pool will shrink"}}
    wait_until(lambda: len(child_pids(pf)) == 1, what="one child left")
    reply = celery_app.control.autoscale(4, 1, destination=[f"pf@{HOST}"], reply=True, **ONE)
    assert "Autoscale not enabled" in by_node(reply)[f"pf@{HOST}"]["error"]


@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_add_consumer_and_cancel_consumer_take_effect(
    worker_factory: Callable[..., WorkerProcess],
    redis_url: str,
    celery_app: celery.Celery,
    client: Celery,
    tmp_path: Path,
    pool: str,
) -> None:
    go = tmp_path / "go"
    go.touch()  # hold returns at once: it only says which process ran it
    worker = worker_factory("control_tasks", "-P", pool, "-c", "1", "-Q", "main", "-n", "w@%h")
    node = f"w@{HOST}"
    reply = celery_app.control.add_consumer("extra", destination=[node], reply=True, **ONE)
    assert by_node(reply) == {node: {"ok": "add consumer extra"}}
    queues = celery_app.control.inspect(timeout=5.0, limit=1).active_queues()[node]
    assert [q["name"] for q in queues] == ["main", "extra"]
    ran_in = client.send_task("ctl.hold", args=[str(go)], queue="extra").get(timeout=15)
    assert ran_in in [worker.pid, *child_pids(worker)]

    reply = celery_app.control.cancel_consumer("extra", destination=[node], reply=True, **ONE)
    assert by_node(reply) == {node: {"ok": "no longer consuming from extra"}}
    # a consumer follows the change before its next fetch (a wait already under way ends
    # within half a second): two tasks one after the other on "main", and the fetch that
    # takes the second started after the cancel
    for _ in range(2):
        assert client.send_task("ctl.add", args=[2, 2], queue="main").get(timeout=15) == 4
    left = client.send_task("ctl.add", args=[1, 1], queue="extra")
    assert client.send_task("ctl.add", args=[3, 3], queue="main").get(timeout=15) == 6
    assert redis.Redis.from_url(redis_url).llen("extra") == 1
    assert left.state == "PENDING"
    reply = celery_app.control.cancel_consumer("nope", destination=[node], reply=True, **ONE)
    assert "not consuming from 'nope'" in by_node(reply)[node]["error"]


def test_time_limit_and_rate_limit_reach_prefork_children(
    worker_factory: Callable[..., WorkerProcess],
    redis_url: str,
    celery_app: celery.Celery,
    client: Celery,
    tmp_path: Path,
) -> None:
    worker_factory("control_tasks", "-P", "prefork", "-c", "2", "-Q", "pf", "-n", "pf@%h")
    node = f"pf@{HOST}"
    replies = celery_cli(redis_url, "control", "time_limit", "ctl.hold", "0.3", "1")
    assert by_node(replies) == {node: {"ok": "time limits set successfully"}}
    never = str(tmp_path / "never")  # no one creates it: only the time limit ends the task
    result = client.send_task("ctl.hold", args=[never, 20.0], queue="pf")
    with pytest.raises(Exception, match="TimeLimitExceeded"):
        result.get(timeout=15)

    replies = celery_cli(redis_url, "control", "rate_limit", "ctl.add", "10/m")
    assert by_node(replies) == {node: {"ok": "new rate limit set successfully"}}
    registered = celery_app.control.inspect(timeout=5.0, limit=1)._request(
        "registered", taskinfoitems=["rate_limit"]
    )
    assert "ctl.add [rate_limit=10/m]" in registered[node]
    reply = celery_app.control.rate_limit("ctl.nope", "1/s", reply=True, **ONE)
    assert by_node(reply) == {node: {"error": "unknown task"}}
    reply = celery_app.control.broadcast("no_such_command", reply=True, **ONE)
    assert "no_such_command" in by_node(reply)[node]["error"]
    replies = celery_cli(redis_url, "control", "heartbeat")
    assert by_node(replies) == {node: None}  # Celery's heartbeat answers nothing
