"""celeriac's remote control drives real Celery workers: the ``celeriac inspect``,
``celeriac control`` and ``celeriac status`` programs and ``app.control``."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import celeriac
from tests.interop.peers import CELERY_WORKER_FLAGS
from tests.support.workers import TESTS_DIR, WorkerProcess, subprocess_env

HOST = socket.gethostname()


def celeriac_cli(
    redis_url: str, *args: str, as_json: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "celeriac",
            "-b",
            redis_url,
            *args,
            *(["--json"] if as_json else []),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(redis_url),
        cwd=str(TESTS_DIR / "support"),
    )


def replies_of(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr + done.stdout
    return json.loads(done.stdout.strip().splitlines()[-1])


def wait_until(check: Callable[[], Any], timeout_s: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.05)


def test_celeriac_inspect_and_control_drive_a_celery_worker(
    celery_worker_factory: Callable[..., WorkerProcess],
    redis_url: str,
    celeriac_client: celeriac.Celery,
    tmp_path: Path,
) -> None:
    worker = celery_worker_factory(
        "celery_control_tasks",
        "-P",
        "threads",
        "-c",
        "2",
        "-Q",
        "so",
        "-n",
        "cel@%h",
        *CELERY_WORKER_FLAGS,
    )
    node = f"cel@{HOST}"
    stats = replies_of(celeriac_cli(redis_url, "inspect", "stats"))[node]
    assert stats["pid"] == worker.pid
    assert stats["pool"]["max-concurrency"] == 2  # a threads pool: it answers while busy
    inspect = celeriac_client.control.inspect(timeout=5.0, limit=1)
    assert {"ctl.add", "ctl.hold"} <= set(inspect.registered()[node])

    go = tmp_path / "go"
    held = celeriac_client.send_task("ctl.hold", args=[str(go)], queue="so")
    active = wait_until(lambda: (a := inspect.active()) and a.get(node) and a, what="active")
    assert [item["id"] for item in active[node]] == [held.id]
    assert active[node][0]["worker_pid"] == worker.pid and active[node][0]["args"] == [str(go)]
    query = inspect.query_task(held.id)[node]
    assert query[held.id][0] == "active"
    go.touch()
    assert held.get(timeout=15) == worker.pid

    done = celeriac_cli(redis_url, "control", "add_consumer", "extra")
    assert replies_of(done) == {node: {"ok": "add consumer extra"}}
    queues = wait_until(
        lambda: (q := inspect.active_queues()) and len(q[node]) == 2 and q, what="two queues"
    )
    assert sorted(q["name"] for q in queues[node]) == ["extra", "so"]
    assert celeriac_client.send_task("ctl.add", args=[2, 3], queue="extra").get(timeout=15) == 5
    reply = celeriac_client.control.cancel_consumer("extra", reply=True, timeout=5.0, limit=1)
    assert reply == [{node: {"ok": "no longer consuming from extra"}}]

    done = celeriac_cli(redis_url, "control", "rate_limit", "ctl.add", "10/m")
    assert replies_of(done) == {node: {"ok": "new rate limit set successfully"}}
    reply = celeriac_client.control.time_limit("ctl.add", 5, 10, reply=True, timeout=5, limit=1)
    assert reply == [{node: {"ok": "time limits set successfully"}}]
    assert "broker_url" in inspect.conf()[node]
    assert inspect.stats()[node]["total"] == {"ctl.hold": 1, "ctl.add": 1}

    # the human forms: Celery's lines
    status = celeriac_cli(redis_url, "status", as_json=False)
    assert status.returncode == 0, status.stderr
    assert f"-> {node}: OK" in status.stdout and "1 node online." in status.stdout
    ping = celeriac_cli(redis_url, "inspect", "ping", as_json=False)
    assert f"-> {node}: OK" in ping.stdout and "pong" in ping.stdout
    tree = celeriac_cli(redis_url, "inspect", "tree", as_json=False)
    assert tree.returncode == 0, tree.stderr
    assert f"{node}: no tree" in tree.stdout  # a Celery worker has no such command

    # what a missing worker looks like: Celery's message and exit code
    nobody = celeriac_cli(redis_url, "inspect", "ping", "-d", "nobody@nowhere", "-t", "0.3")
    assert nobody.returncode == 69
    assert "No nodes replied within time constraint" in nobody.stderr
    unknown = celeriac_cli(redis_url, "inspect", "no_such_thing")
    assert unknown.returncode == 2 and "Available inspect commands" in unknown.stderr
