"""Clean exits and warm/cold shutdowns, with real processes, real Redis and real signals.

- ``celeriac demo`` returns only once every process it started is gone (not even a zombie);
- a warm shutdown (SIGTERM, SIGINT) lets the running task finish and be acked, and puts the
  prefetched-but-unstarted messages back on their queue at once, on every pool;
- a second SIGINT is a cold shutdown that still loses nothing with ``acks_late``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import redis

from celeriac import Celeriac
from tests.support.workers import ROOT, WorkerProcess, start_celeriac_worker

DEMO = [sys.executable, "-m", "celeriac", "demo", "--json"]


def _wait_until(what: Callable[[], bool], timeout_s: float, why: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout_s
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError(why())
        time.sleep(0.02)


class Watcher:
    """Remember every descendant a process ever had (polled every 10 ms)."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.seen: dict[int, psutil.Process] = {}
        self.workers: set[int] = set()  # those whose command line runs a worker
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        while not self.done.is_set():
            try:
                for child in self.root.children(recursive=True):
                    if child.pid not in self.seen:
                        self.seen[child.pid] = child
                        self._note_worker(child)
            except psutil.NoSuchProcess:
                return
            time.sleep(0.01)

    def _note_worker(self, proc: psutil.Process) -> None:
        try:
            if "worker" in proc.cmdline():
                self.workers.add(proc.pid)
        except psutil.Error:
            return

    def stop(self) -> None:
        self.done.set()
        self.thread.join(5)

    def present(self) -> list[str]:
        """Every remembered process still in the process table (zombies included)."""
        left = []
        for proc in self.seen.values():
            try:
                if proc.is_running():
                    left.append(f"{proc.pid} {proc.status()} {' '.join(proc.cmdline()[:6])}")
            except psutil.NoSuchProcess:
                continue
        return left

    def kill_left(self) -> None:
        for proc in self.seen.values():
            try:
                if proc.is_running():
                    proc.kill()
            except psutil.NoSuchProcess:
                continue


def _demo_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env.pop("CELERIAC_BROKER_URL", None)
    env.pop("CELERIAC_RESULT_BACKEND", None)
    return env


@pytest.fixture
def demo_runs() -> Iterator[list[tuple[subprocess.Popen[bytes], Watcher]]]:
    runs: list[tuple[subprocess.Popen[bytes], Watcher]] = []
    yield runs
    for proc, watcher in runs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        watcher.stop()
        watcher.kill_left()


@pytest.mark.parametrize("interrupt", [False, True], ids=["to-the-end", "sigint-mid-run"])
def test_demo_returns_only_when_every_process_it_started_is_gone(
    tmp_path: Path,
    redis_url: str,
    demo_runs: list[tuple[subprocess.Popen[bytes], Watcher]],
    interrupt: bool,
) -> None:
    proc = subprocess.Popen(
        [*DEMO, "--pool", "prefork", "-c", "3", "--broker", redis_url],
        cwd=tmp_path,
        env=_demo_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    watcher = Watcher(proc.pid)
    demo_runs.append((proc, watcher))
    if interrupt:
        _wait_until(
            lambda: len(watcher.workers) >= 4,
            60,
            lambda: f"the demo never had its 4 worker processes: {watcher.present()}",
        )
        proc.send_signal(signal.SIGINT)
    proc.wait(120)
    left = watcher.present()  # right after the return, before anyone else could reap
    watcher.stop()
    assert len(watcher.workers) >= 4, "the manager and its 3 children were all seen"
    assert left == [], f"still present after the demo returned: {left}"


POOLS = ["solo", "threads", "prefork", "gevent", "eventlet", "asyncio"]
OTHERS = 6


@pytest.fixture
def client(redis_url: str, backend_url: str) -> Celeriac:
    return Celeriac("client", broker=redis_url, backend=backend_url)


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def _gate_name(pool: str) -> str:
    return "shut.agate" if pool == "asyncio" else "shut.gate"


@pytest.mark.parametrize(
    ("pool", "signum"),
    [(pool, signal.SIGTERM) for pool in POOLS]
    + [("solo", signal.SIGINT), ("prefork", signal.SIGINT)],
    ids=[f"{pool}-TERM" for pool in POOLS] + ["solo-INT", "prefork-INT"],
)
def test_warm_shutdown_finishes_the_running_task_and_puts_prefetched_back_at_once(
    worker_factory: Callable[..., WorkerProcess],
    client: Celeriac,
    r: redis.Redis,
    pool: str,
    signum: int,
) -> None:
    gate = client.send_task(_gate_name(pool), ("w",))
    for _ in range(OTHERS):
        client.send_task("shut.count", ("other",))
    worker = worker_factory("shutdown_tasks", "-P", pool, "-c", "1", "--prefetch-multiplier", "4")
    _wait_until(lambda: r.exists("started:w") == 1, 20, lambda: worker.log())
    assert r.llen("celery") < OTHERS + 1, "the worker holds more than the running task"

    worker.signal(signum)
    # while the gate is still closed, every message not started is back on the queue
    _wait_until(
        lambda: r.llen("celery") == OTHERS,
        3,
        lambda: f"{r.llen('celery')} of {OTHERS} back on the queue 3 s after the stop",
    )
    assert worker.process.poll() is None, "the running task holds the worker"
    assert not gate.ready()

    r.set("open:w", 1)
    assert worker.wait(20) == 0
    assert gate.get(timeout=5) == "opened"
    assert r.get("runs:w") == b"1"
    assert r.get("runs:other") is None
    assert r.llen("celery") == OTHERS
    assert r.hlen("unacked") == 0, "the finished task was acked, the others put back"


@pytest.mark.parametrize("pool", ["solo", "threads", "prefork", "gevent", "asyncio"])
def test_second_sigint_is_a_cold_shutdown_that_loses_nothing_with_acks_late(
    worker_factory: Callable[..., WorkerProcess],
    client: Celeriac,
    r: redis.Redis,
    pool: str,
) -> None:
    interrupted = client.send_task("shut.late_gate", ("c",))
    others = [client.send_task("shut.count", ("cold",)) for _ in range(3)]
    worker = worker_factory("shutdown_tasks", "-P", pool, "-c", "1")
    _wait_until(lambda: r.exists("started:c") == 1, 20, lambda: worker.log())
    worker.signal(signal.SIGINT)
    worker.wait_for_log("warm shutdown")
    worker.signal(signal.SIGINT)
    worker.wait(20)
    assert "cold shutdown" in worker.log()
    # nothing lost: the interrupted acks_late task and every unstarted one are queued again
    assert r.llen("celery") == 1 + len(others) - int(r.get("runs:cold") or 0)
    assert r.hlen("unacked") == 0

    r.set("open:c", 1)
    worker_factory("shutdown_tasks", "-P", pool, "-c", "1")
    assert interrupted.get(timeout=20) == "opened"
    assert sorted(o.get(timeout=20) for o in others) == [1, 2, 3]
    assert r.get("runs:c") == b"2", "interrupted once, run again to the end"


@pytest.mark.parametrize("pool", ["solo", "prefork", "threads"])
def test_warm_shutdown_on_sqlite_puts_prefetched_back_at_once(tmp_path: Path, pool: str) -> None:
    url = f"sqlite:///{tmp_path / 'celeriac.sqlite3'}"
    client = Celeriac("client", broker=url, backend=url)
    gate_key = f"sq-{pool}"
    gate = client.send_task("shut.sqlite_gate", (str(tmp_path / gate_key),))
    for _ in range(OTHERS):
        client.send_task("shut.touch", (str(tmp_path / "other"),))
    worker = start_celeriac_worker(
        "shutdown_tasks", url, "-P", pool, "-c", "1", "--prefetch-multiplier", "4",
        backend_url=url,
    )  # fmt: skip
    try:
        started = tmp_path / f"{gate_key}.started"
        _wait_until(started.exists, 20, worker.log)
        broker = client.broker
        assert broker.queue_length("celery") < OTHERS + 1
        worker.signal(signal.SIGTERM)
        _wait_until(
            lambda: broker.queue_length("celery") == OTHERS,
            3,
            lambda: f"{broker.queue_length('celery')} of {OTHERS} back 3 s after the stop",
        )
        assert worker.process.poll() is None and not gate.ready()
        (tmp_path / f"{gate_key}.open").touch()
        assert worker.wait(20) == 0
        assert gate.get(timeout=5) == "opened"
        assert broker.queue_length("celery") == OTHERS
        assert not (tmp_path / "other").exists(), "no unstarted task ran"
    finally:
        worker.stop()
        client.close()
