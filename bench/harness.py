"""What every workload uses: the Redis server, started processes, clients and drain timing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .apps.counter import DONE, FIRST, LAST
from .peers import load
from .peers.base import Peer
from .procs import ROOT, Registry, Started
from .redis_proc import RedisServer


class NotApplicable(Exception):
    """The library has no such configuration (reported as n/a)."""


class Failed(Exception):
    """A measurement went wrong; the message says what and carries the log tail."""


@dataclass(frozen=True)
class Entrant:
    peer: str
    tuned: bool = False

    @property
    def label(self) -> str:
        return f"{self.peer} (tuned)" if self.tuned else self.peer


@dataclass
class Options:
    n: int = 10_000
    rounds: int = 3
    roundtrips: int = 500
    # per latency loop: a library that polls every 0.2-0.5 s gets a partial sample
    budget_s: float = 8.0
    # per drain, from worker start: a library slower than ~800 tasks/s at N = 10,000 gets a
    # partial figure (its rate over the tasks it did), which keeps 3 full rounds near 25 min
    drain_timeout_s: float = 15.0
    settle_s: float = 1.5  # idle time before reading a worker's memory
    tuned: bool = True


@dataclass
class Drained:
    count: int
    first: float
    last: float
    partial: bool

    @property
    def rate(self) -> float:
        span = self.last - self.first
        return self.count / span if span > 0 else float("nan")


@dataclass
class Harness:
    server: RedisServer
    registry: Registry
    options: Options

    @property
    def url(self) -> str:
        return self.server.url(0)

    def python_for(self, peer: Peer) -> str | None:
        """The interpreter that has the library: the project's, or its own venv's."""
        if peer.venv is None:
            return sys.executable
        python = ROOT / f".venv-bench-{peer.venv}" / "bin" / "python"
        return str(python) if python.exists() else None

    def env(self, peer: Peer, results: bool, tuned: bool, mode: str = "one") -> dict[str, str]:
        return {
            "BENCH_REDIS_URL": self.url,
            "BENCH_RESULTS": "1" if results else "0",
            "BENCH_TUNED": "1" if tuned else "0",
            "BENCH_SLOTS": str(peer.slots(mode)),
            **peer.worker_env(self.url),
        }

    def flush(self) -> None:
        self.server.flush()

    def client(
        self,
        peer_name: str,
        action: str,
        *,
        results: bool = False,
        tuned: bool = False,
        n: int = 1,
        bulk: bool = False,
        timeout_s: float = 300.0,
        extra: list[str] | None = None,
    ) -> dict[str, object]:
        """Run bench.client in the library's interpreter; its JSON answer."""
        if peer_name == "raw":
            python: str | None = sys.executable
            env = {"BENCH_REDIS_URL": self.url}
        else:
            peer = load(peer_name)
            python = self.python_for(peer)
            env = self.env(peer, results, tuned)
        if python is None:
            raise NotApplicable(f"{peer_name} not installed")
        cmd = [
            python,
            "-m",
            "bench.client",
            peer_name,
            action,
            "--n",
            str(n),
            "--budget",
            str(self.options.budget_s),
            *(extra or []),
        ]
        if bulk:
            cmd.append("--bulk")
        if tuned:
            cmd.append("--tuned")
        proc = self.registry.spawn(f"client-{peer_name}-{action}", cmd, env)
        try:
            proc.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.registry.stop(proc)
            raise Failed(f"{peer_name} {action}: no answer in {timeout_s:.0f}s") from None
        tail = proc.log_tail(40)
        self.registry.stop(proc)
        for line in reversed(tail.splitlines()):
            if line.startswith("BENCH-RESULT "):
                answer: dict[str, object] = json.loads(line.split(" ", 1)[1])
                return answer
        last = tail.strip().splitlines()[-1] if tail.strip() else "no output"
        raise Failed(f"{peer_name} {action} failed (exit {proc.popen.returncode}): {last}\n{tail}")

    def start_worker(self, entrant: Entrant, mode: str, results: bool) -> Started:
        peer = load(entrant.peer)
        python = self.python_for(peer)
        if python is None:
            raise NotApplicable(f"{peer.name} not installed")
        cmd = peer.worker_cmd(python, mode, entrant.tuned)
        if cmd is None:
            raise NotApplicable(f"{peer.name} has no {mode} configuration")
        env = self.env(peer, results, entrant.tuned, mode)
        return self.registry.spawn(f"worker-{entrant.label}-{mode}", cmd, env)

    def stop(self, proc: Started) -> None:
        self.registry.stop(proc)

    def wait_done(
        self, worker: Started, n: int, timeout_s: float, start_timeout_s: float = 60.0
    ) -> Drained:
        """Wait until n tasks counted themselves; a slow library gets a partial figure."""
        client = self.server.client()
        began = time.monotonic()
        last_change = began
        seen = 0
        while True:
            count = int(client.get(DONE) or 0)
            now = time.monotonic()
            if count != seen:
                seen, last_change = count, now
            if count >= n:
                break
            if not worker.alive():
                tail = worker.log_tail()
                last_line = tail.strip().splitlines()[-1] if tail.strip() else "no output"
                raise Failed(
                    f"{worker.name} exited ({worker.popen.returncode}) after {count}/{n} "
                    f"tasks: {last_line}\n{tail}"
                )
            if count == 0 and now - began > start_timeout_s:
                raise Failed(
                    f"{worker.name} ran no task in {start_timeout_s:.0f}s:\n{worker.log_tail()}"
                )
            if now - began > timeout_s or (count and now - last_change > 30.0):
                break
            time.sleep(0.02)
        first = float(client.get(FIRST) or 0.0)
        last = float(client.get(LAST) or 0.0)
        return Drained(count=seen, first=first, last=last, partial=seen < n)


def log_dir() -> Path:
    import tempfile

    return Path(tempfile.mkdtemp(prefix="celeriac-bench-logs-"))
