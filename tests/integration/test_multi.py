"""``celeriac multi``: a real start of 2 detached nodes on a real redis-server, a task on
each, then ``stopwait``, and no process left (checked with psutil)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from celeriac import Celery
from celeriac.cli.daemon import read_pid
from tests.integration.test_worker_cli import wait_until
from tests.support.workers import subprocess_env

HOST = __import__("socket").gethostname()


@pytest.fixture
def tracked() -> Iterator[list[psutil.Process]]:
    """Processes the nodes started; any still alive at teardown is killed by PID."""
    procs: list[psutil.Process] = []
    yield procs
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGKILL)


def multi(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "celeriac", "multi", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_multi_start_two_nodes_then_stopwait_leaves_no_process(
    redis_url: str, backend_url: str, tmp_path: Path, tracked: list[psutil.Process]
) -> None:
    env = subprocess_env(redis_url, backend_url)
    paths = [f"--pidfile={tmp_path}/%n.pid", f"--logfile={tmp_path}/%n%I.log"]
    # Celery's syntax: a count of nodes, options for all, one node's own concurrency
    started = multi(
        env, tmp_path, "start", "2", "-A", "core_tasks", "-l", "info", "-c", "1", "-c:2", "2",
        "-Q:1", "celery,one", "-Q:2", "celery,two", *paths,
    )  # fmt: skip
    pids = {n: read_pid(str(tmp_path / f"celery{n}.pid")) for n in (1, 2)}
    for pid in pids.values():
        if pid is not None:
            proc = psutil.Process(pid)
            tracked.extend([proc, *proc.children(recursive=True)])
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"> celery1@{HOST}: OK" in started.stdout
    assert f"> celery2@{HOST}: OK" in started.stdout
    assert all(pid is not None and psutil.pid_exists(pid) for pid in pids.values())

    def log(n: int) -> str:
        path = tmp_path / f"celery{n}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    for n in (1, 2):
        wait_until(lambda n=n: "ready." in log(n), 20, lambda n=n: log(n))  # type: ignore[misc]
    # per-node -c: node 2 runs two children, node 1 one
    wait_until(lambda: len(psutil.Process(pids[2]).children()) == 2, 15, lambda: log(2))
    assert len(psutil.Process(pids[1]).children()) == 1
    tracked.extend(c for pid in pids.values() for c in psutil.Process(pid).children())

    client = Celery("client", broker=redis_url, backend=backend_url)
    try:
        on_one = client.send_task("core.add", (1, 2), queue="one")
        on_two = client.send_task("core.add", (3, 4), queue="two")
        assert (on_one.get(timeout=10), on_two.get(timeout=10)) == (3, 7)
    finally:
        client.close()

    # restart = stopwait + start: new processes under the same pidfiles
    restarted = multi(env, tmp_path, "restart", "2", "-A", "core_tasks", "-c", "1", *paths)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert restarted.stdout.count(": DOWN") == 2 and restarted.stdout.count(": OK") == 2
    new_pids = {n: read_pid(str(tmp_path / f"celery{n}.pid")) for n in (1, 2)}
    for pid in new_pids.values():
        assert pid is not None
        tracked.append(psutil.Process(pid))
    assert set(new_pids.values()).isdisjoint(pids.values())
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in tracked[:-2])
    for n in (1, 2):
        wait_until(lambda n=n: log(n).count("ready.") == 2, 20, lambda n=n: log(n))  # type: ignore[misc]
    tracked.extend(c for pid in new_pids.values() for c in psutil.Process(pid).children())

    stopped = multi(env, tmp_path, "stopwait", "2", *paths)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert f"> celery1@{HOST}: DOWN" in stopped.stdout
    assert f"> celery2@{HOST}: DOWN" in stopped.stdout
    left = [p for p in tracked if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert left == [], left
    assert not list(tmp_path.glob("*.pid"))  # each node removed its own pidfile
    again = multi(env, tmp_path, "stop", "2", *paths)
    assert again.stdout.count(": DOWN") == 2


def test_multi_kill_sends_sigkill_and_clears_the_pidfile(
    redis_url: str, backend_url: str, tmp_path: Path, tracked: list[psutil.Process]
) -> None:
    env = subprocess_env(redis_url, backend_url)
    args = ["k1", "-A", "core_tasks", "-P", "solo", f"--pidfile={tmp_path}/%n.pid"]
    started = multi(env, tmp_path, "start", *args, f"--logfile={tmp_path}/%n.log")
    pid = read_pid(str(tmp_path / "k1.pid"))
    assert pid is not None, started.stdout + started.stderr
    tracked.append(psutil.Process(pid))
    killed = multi(env, tmp_path, "kill", *args)
    assert f"> k1@{HOST}: KILL -> {pid}" in killed.stdout
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not (tmp_path / "k1.pid").exists()


def test_multi_start_reports_a_node_that_cannot_start(tmp_path: Path) -> None:
    unused = subprocess_env("redis://127.0.0.1:1/0")  # nothing listens on port 1
    started = multi(
        unused, tmp_path, "start", "b1", "-A", "core_tasks", "-P", "solo",
        f"--pidfile={tmp_path}/%n.pid", f"--logfile={tmp_path}/%n.log",
    )  # fmt: skip
    assert started.returncode == 1
    assert f"> b1@{HOST}: FAILED (exit 1)" in started.stdout
    assert "cannot reach the Redis broker" in started.stdout
    assert not (tmp_path / "b1.pid").exists()
