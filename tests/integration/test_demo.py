"""``celeriac demo`` end to end: real workers, real brokers, the JSON facts, and Ctrl-C.

Each test runs the command as a user would, in a subprocess, and reads its JSON or its
stderr progress lines (which say when a worker is up, so nothing here sleeps to guess).
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

from tests.support.redis_server import free_port
from tests.support.workers import ROOT

TOKEN_VAR = "CELERIAC_DEMO_RUN"


def demo_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env.pop("CELERIAC_BROKER_URL", None)
    env.pop("CELERIAC_RESULT_BACKEND", None)
    return env


def run_demo_json(tmp_path: Path, *args: str, timeout_s: float = 90) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "celeriac", "demo", "--json", *args],
        cwd=tmp_path,
        env=demo_env(),
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    try:
        data = orjson.loads(proc.stdout)
    except orjson.JSONDecodeError:
        pytest.fail(f"demo printed no JSON (exit {proc.returncode}):\n{proc.stderr.decode()}")
    return proc.returncode, data


def pool_report(data: dict[str, Any], pool: str) -> dict[str, Any]:
    report = next(r for r in data["pools"] if r["pool"] == pool)
    assert report["status"] == "ok", report
    return report


def seed_call(facts: dict[str, Any], label: str) -> dict[str, Any]:
    return next(c for c in facts["seed_calls"] if c["call"] == label)


def test_demo_solo_on_the_embedded_default_runs_everything_in_the_main_process(
    tmp_path: Path,
) -> None:
    code, data = run_demo_json(tmp_path, "--pool", "solo")
    assert code == 0, data
    assert data["ok"] is True
    assert data["broker"].startswith("sqlite:///")
    facts = pool_report(data, "solo")["facts"]
    assert facts["process_count"] == 1
    assert facts["child_pids"] == []
    assert facts["task_pids"] == [facts["manager_pid"]]
    assert facts["concurrency_mode"] == "sequential"
    assert all(batch["max_overlap"] == 1 for batch in facts["batches"].values())
    assert facts["batches"]["io"]["tasks"] == 20
    assert facts["batches"]["io"]["span_s"] >= 20 * 0.2
    assert facts["own_connection_pids"] == [facts["manager_pid"]]
    add = seed_call(facts, "add(3, 5)")
    assert (add["state"], add["result"], add["pid"]) == ("SUCCESS", 8, facts["manager_pid"])
    assert not list(tmp_path.iterdir()), "the demo must not leave files in the working dir"


def test_demo_prefork_on_redis_runs_tasks_in_children_with_their_own_connections(
    tmp_path: Path, redis_url: str
) -> None:
    code, data = run_demo_json(tmp_path, "--pool", "prefork", "-c", "2", "--broker", redis_url)
    assert code == 0, data
    facts = pool_report(data, "prefork")["facts"]
    manager = facts["manager_pid"]
    children = facts["child_pids"]
    assert len(children) == 2
    assert facts["process_count"] == 3
    assert set(facts["task_pids"]) == set(children)
    assert facts["concurrency_mode"] == "parallel"
    assert "processes" in facts["batches"]["cpu"]["overlap_across"]
    assert set(facts["own_connection_pids"]) == {manager, *children}
    assert facts["shared_socket_pids"] == []
    for proc in facts["processes"]:
        if proc["role"] == "child":
            assert proc["ppid"] == manager
            names = " ".join(proc["connections"])
            assert f".{proc['pid']}" in names, "each child's connections carry its own pid"
            assert "(backend)" in names and "(broker)" in names
    assert seed_call(facts, "add(3, 5)")["pid"] in children


def test_demo_reports_a_worker_that_cannot_start_and_exits_non_zero(tmp_path: Path) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    code, data = run_demo_json(tmp_path, "--pool", "solo", "--broker", closed, timeout_s=60)
    assert code == 1
    assert data["ok"] is False
    report = data["pools"][0]
    assert report["status"] == "error"
    assert any("cannot reach the Redis broker" in line for line in report["log_tail"])


@pytest.mark.slow
def test_demo_all_pools_agree_with_the_seed_within_a_minute(tmp_path: Path) -> None:
    started = time.monotonic()
    code, data = run_demo_json(tmp_path, timeout_s=120)
    elapsed = time.monotonic() - started
    assert code == 0, [(r["pool"], r["status"], r["checks"]) for r in data["pools"]]
    assert elapsed < 60
    assert {r["pool"] for r in data["pools"]} == {
        "prefork",
        "solo",
        "eventlet",
        "gevent",
        "threads",
        "asyncio",
    }


EXAMPLE = ROOT / "examples" / "seed_project"


@pytest.mark.parametrize("broker", ["redis", "default"])
def test_seed_project_start_worker_sh_runs_the_seed_flow(
    tmp_path: Path, broker: str, request: pytest.FixtureRequest
) -> None:
    project = tmp_path / "seed_project"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3*"))
    env = demo_env()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["SEED_OUTBOX"] = str(tmp_path / "outbox")
    if broker == "redis":
        env["CELERIAC_BROKER_URL"] = request.getfixturevalue("redis_url")
    worker = subprocess.Popen(
        ["./start_worker.sh"], cwd=project, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        flow = subprocess.run(
            [sys.executable, "run_flow.py"], cwd=project, env=env, capture_output=True,
            timeout=90, check=False,
        )  # fmt: skip
        children = psutil.Process(worker.pid).children()
    finally:
        worker.terminate()
        _, log = worker.communicate(timeout=30)
    out = flow.stdout.decode()
    assert flow.returncode == 0, out + flow.stderr.decode() + log.decode()
    assert "add.delay(3, 5).get()              8" in out
    assert "prefork pool, child" in out and f"(ppid {worker.pid})" in out
    assert "pipeline (3 + 5) * 6               add=8@" in out and "report=48@" in out
    assert len(children) == 4
    assert not any(
        child.is_running() and child.status() != psutil.STATUS_ZOMBIE for child in children
    )
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1
    if broker == "default":
        assert (project / "celeriac.sqlite3").exists()


class DemoProcess:
    """A demo subprocess whose stderr progress lines are queued as they arrive."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celeriac", "demo", *args],
            cwd=tmp_path,
            env=demo_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr:
            for raw in self.proc.stderr:
                self.lines.put(raw.decode(errors="replace"))

    def wait_for_line(self, text: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.seen):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.proc.poll() is not None:
                pytest.fail(f"demo never printed {text!r}; it printed:\n{''.join(self.seen)}")
            try:
                self.seen.append(self.lines.get(timeout=remaining))
            except queue.Empty:
                continue

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def kill(self) -> None:
        """Teardown after a failed test: the demo and anything it left, by PID."""
        left = self.descendants() if self.proc.poll() is None else []
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for proc in left:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        self._reader.join(10)


@pytest.fixture
def demo_process(tmp_path: Path) -> Iterator[list[DemoProcess]]:
    started: list[DemoProcess] = []
    yield started
    for demo in started:
        demo.kill()


def _token_holders(token: str) -> list[int]:
    holders = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(TOKEN_VAR) == token:
                holders.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return holders


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_mid_run_stops_every_process_the_demo_started(
    tmp_path: Path, demo_process: list[DemoProcess], signum: int
) -> None:
    demo = DemoProcess(tmp_path, "--pool", "prefork", "-c", "3")
    demo_process.append(demo)
    demo.wait_for_line("prefork: CPU batch")
    started = demo.descendants()
    workers = [p for p in started if "worker" in " ".join(p.cmdline())]
    assert len(workers) == 4, [p.cmdline() for p in started]  # manager + 3 children
    token = started[0].environ()[TOKEN_VAR]

    demo.proc.send_signal(signum)
    assert demo.proc.wait(30) == 130

    survivors = [p.pid for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert survivors == []
    assert _token_holders(token) == []
