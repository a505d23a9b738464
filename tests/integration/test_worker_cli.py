"""A real worker started with the command line of a systemd unit written from Celery's docs,
on a real redis-server: pidfile, logfile, -E, --without-gossip/mingle, -O fair, and
--autoscale growing to MAX under load and back to MIN (counted with psutil)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from celeriac import Celery
from celeriac.cli.daemon import read_pid
from tests.support.workers import subprocess_env

HOST = __import__("socket").gethostname()


def wait_until(condition: Callable[[], object], timeout_s: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s: {what()}")
        time.sleep(0.05)


def _kill_tree(pids: list[int]) -> None:
    """Finalizer: kill by PID whatever is still alive (children first)."""
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            for kid in psutil.Process(pid).children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    kid.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[int]]:
    """PIDs the test started; anything left is killed by PID at teardown."""
    pids: list[int] = []
    yield pids
    _kill_tree(pids)


def _children(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).children() if p.status() != "zombie"]
    except psutil.NoSuchProcess:
        return []


def test_systemd_style_command_line_runs_tasks_and_autoscales(
    redis_url: str, backend_url: str, tmp_path: Path, started: list[int]
) -> None:
    env = subprocess_env(redis_url, backend_url, AUTOSCALE_KEEPALIVE="1")
    argv = [
        sys.executable, "-m", "celeriac", "-A", "core_tasks", "worker",
        "-n", "w1@%h", "-l", "info",
        "--logfile=%n%I.log", "--pidfile=%n.pid",
        "-E", "--without-gossip", "--without-mingle", "--autoscale=3,1", "-O", "fair",
    ]  # fmt: skip
    banner = tmp_path / "stderr.txt"  # the banner goes to the terminal, as Celery's does
    with banner.open("wb") as stderr:
        proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stderr=stderr)
    started.append(proc.pid)
    pidfile, logfile = tmp_path / "w1.pid", tmp_path / "w1.log"

    def log() -> str:
        return logfile.read_text(errors="replace") if logfile.exists() else "(no log file)"

    wait_until(lambda: "w1@" in log() and "ready." in log(), 20, log)
    assert read_pid(str(pidfile)) == proc.pid
    shown = banner.read_text()
    assert "--without-gossip: celeriac workers do not gossip" in shown
    assert "--without-mingle: celeriac workers do not mingle" in shown
    assert "{min=1, max=3} (prefork)" in shown
    assert "task events: ON" in shown
    wait_until(lambda: len(_children(proc.pid)) == 1, 10, log)

    client = Celery("client", broker=redis_url, backend=backend_url)
    try:
        assert client.send_task("core.add", (2, 3)).get(timeout=10) == 5
        # load: 6 tasks of 1 s with one child -> the pool grows to MAX
        results = [client.send_task("core.sleep", (1.0,)) for _ in range(6)]
        wait_until(lambda: len(_children(proc.pid)) == 3, 15, log)
        assert [r.get(timeout=20) for r in results] == [1.0] * 6
        # idle for AUTOSCALE_KEEPALIVE -> back to MIN
        wait_until(lambda: len(_children(proc.pid)) == 1, 15, log)
    finally:
        client.close()
    assert "autoscale: " in log() and "growing to 3 children" in log()
    assert "shrinking to 1 children" in log()

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    assert not pidfile.exists()  # removed at exit


def test_detach_writes_the_pidfile_and_runs_in_the_background(
    redis_url: str, backend_url: str, tmp_path: Path, started: list[int]
) -> None:
    env = subprocess_env(redis_url, backend_url)
    pidfile, logfile = tmp_path / "d1.pid", tmp_path / "d1.log"
    argv = [
        sys.executable, "-m", "celeriac", "-A", "core_tasks", "worker", "-D", "-P", "solo",
        "-n", "d1@%h", f"--pidfile={tmp_path}/%n.pid", f"--logfile={tmp_path}/%n%I.log",
        "--umask=0077",
    ]  # fmt: skip
    launcher = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    pid = read_pid(str(pidfile))
    if pid:
        started.append(pid)
    assert launcher.returncode == 0, launcher.stderr
    assert pid is not None and psutil.pid_exists(pid)
    daemon = psutil.Process(pid)
    assert daemon.ppid() != os.getpid()  # double-forked away from us
    assert os.getsid(pid) == pid or os.getsid(pid) != os.getsid(0)  # its own session
    assert (pidfile.stat().st_mode & 0o777) == 0o600  # --umask=0077
    wait_until(lambda: "ready." in logfile.read_text(), 20, logfile.read_text)

    client = Celery("client", broker=redis_url, backend=backend_url)
    try:
        assert client.send_task("core.add", (20, 22)).get(timeout=10) == 42
    finally:
        client.close()
    # a second worker with the same pidfile refuses to start, and says why
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1
    assert f"belongs to process {pid}, which is still running" in again.stderr
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not psutil.pid_exists(pid) or daemon.status() == "zombie", 20, str)
    wait_until(lambda: not pidfile.exists(), 5, lambda: "pidfile left behind")


def test_uid_and_gid_drop_privileges_or_say_why_not(
    redis_url: str,
    backend_url: str,
    tmp_path: Path,
    started: list[int],
    request: pytest.FixtureRequest,
) -> None:
    # the worker writes its pidfile and log after switching group: a directory it can reach.
    # (--uid=nobody itself is proven in the unit tests: here Python's own files live under
    # /root, which nobody may not read, so a worker could not import after the switch)
    run_dir = Path(tempfile.mkdtemp(prefix="celeriac-uid-"))
    run_dir.chmod(0o777)
    request.addfinalizer(lambda: shutil.rmtree(run_dir, ignore_errors=True))
    env = subprocess_env(redis_url, backend_url)
    argv = [
        sys.executable, "-m", "celeriac", "-A", "core_tasks", "worker", "-D", "-P", "solo",
        "-n", "u1@%h", f"--pidfile={run_dir}/%n.pid", f"--logfile={run_dir}/%n.log",
        "--uid=root", "--gid=nogroup", f"--workdir={run_dir}",
    ]  # fmt: skip
    launcher = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    pid = read_pid(str(run_dir / "u1.pid"))
    if pid:
        started.append(pid)
    if os.getuid() != 0:  # only root may change user: the error says so, nothing starts
        assert launcher.returncode == 1
        assert "only root may change user or group" in launcher.stderr
        assert pid is None
        return
    assert launcher.returncode == 0, launcher.stderr
    assert pid is not None
    daemon = psutil.Process(pid)
    assert daemon.uids().real == daemon.uids().effective == 0
    assert daemon.gids().real == daemon.gids().effective == 65534
    assert daemon.cwd() == str(run_dir)  # --workdir
    client = Celery("client", broker=redis_url, backend=backend_url)
    try:
        assert client.send_task("core.add", (1, 1)).get(timeout=10) == 2
    finally:
        client.close()
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not (run_dir / "u1.pid").exists(), 20, lambda: "pidfile left behind")
