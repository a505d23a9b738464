"""``celeriac inspect tree``: every worker's live process tree, measured by the workers
themselves, for a cluster of workers on different pools at once."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from celeriac import Celery
from tests.support.workers import TESTS_DIR, WorkerProcess, subprocess_env

HOST = socket.gethostname()


def celeriac_cli(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = subprocess_env(redis_url)
    env["COLUMNS"] = "160"
    done = subprocess.run(
        [sys.executable, "-m", "celeriac", "-b", redis_url, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=str(TESTS_DIR / "support"),
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done


@pytest.fixture
def client(redis_url: str, backend_url: str) -> Iterator[Celery]:
    app = Celery("tree_sender", broker=redis_url, backend=backend_url)
    yield app
    app.close()


def wait_until(check: Callable[[], Any], timeout_s: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.05)


def test_tree_of_a_prefork_and_a_threads_worker_as_measured(
    worker_factory: Callable[..., WorkerProcess],
    redis_url: str,
    client: Celery,
    tmp_path: Path,
) -> None:
    go = tmp_path / "go"
    pf = worker_factory("control_tasks", "-P", "prefork", "-c", "4", "-Q", "pf", "-n", "pf@%h")
    th = worker_factory("control_tasks", "-P", "threads", "-c", "2", "-Q", "th", "-n", "th@%h")
    pf_node, th_node = f"pf@{HOST}", f"th@{HOST}"
    pf_tasks = [client.send_task("ctl.hold", args=[str(go)], queue="pf") for _ in range(2)]
    th_task = client.send_task("ctl.hold", args=[str(go)], queue="th")
    inspect = client.control.inspect(timeout=5.0, limit=2)
    wait_until(
        lambda: (a := inspect.active()) and len(a[pf_node]) == 2 and len(a[th_node]) == 1,
        what="three holds running",
    )
    try:
        tree = json.loads(celeriac_cli(redis_url, "inspect", "tree", "--json").stdout)
        text = celeriac_cli(redis_url, "inspect", "tree").stdout
    finally:
        go.touch()
    for result in [*pf_tasks, th_task]:
        result.get(timeout=15)

    # prefork: the manager and its 4 children, as psutil sees them from outside
    pf_tree = tree[pf_node]
    children = {p.pid: p for p in psutil.Process(pf.pid).children()}
    assert len(children) == 4
    assert pf_tree["pid"] == pf.pid and pf_tree["pool"] == "prefork"
    manager = [p for p in pf_tree["processes"] if p["role"] == "manager"]
    kids = [p for p in pf_tree["processes"] if p["role"] == "child"]
    assert [p["pid"] for p in manager] == [pf.pid]
    assert sorted(p["pid"] for p in kids) == sorted(children)
    assert sorted(p["child_index"] for p in kids) == [0, 1, 2, 3]
    for kid in kids:
        assert kid["ppid"] == pf.pid
        assert kid["num_threads"] >= 1
        names = {c["name"] for c in kid["connections"]}
        # each child's own connections, by the names they gave themselves
        assert f"celeriac.child{kid['child_index']}.{kid['pid']}" in names
        assert all(c["own"] for c in kid["connections"])
    assert {c["name"] for c in manager[0]["connections"]} >= {f"celeriac.worker.{pf.pid}:control"}
    running = pf_tree["running"]
    assert sorted(r["id"] for r in running) == sorted(r.id for r in pf_tasks)
    assert {r["pid"] for r in running} <= set(children)
    assert all(r["runtime_s"] >= 0 and r["child_index"] in (0, 1, 2, 3) for r in running)

    # threads: one process, its OS threads, the task on one of the pool's threads
    th_tree = tree[th_node]
    assert [p["pid"] for p in th_tree["processes"]] == [th.pid]
    threads = {t["ident"]: t["name"] for t in th_tree["processes"][0]["threads"]}
    (task,) = th_tree["running"]
    assert task["id"] == th_task.id and task["pid"] == th.pid
    assert threads[task["thread_id"]] == task["thread_name"]
    assert task["thread_name"].startswith("celeriac-thread")
    assert f"celeriac.worker.{th.pid}" in {
        c["name"] for c in th_tree["processes"][0]["connections"]
    }

    # the terminal form: the seed's shape
    for pid in children:
        assert f"子进程 PID {pid}" in text
    assert f"进程 PID {pf.pid} (主进程 - Manager)" in text
    assert f"进程 PID {th.pid} (主进程 - 唯一进程)" in text
    assert text.count("running: ctl.hold[") == 3
    assert "2 nodes online." in text
