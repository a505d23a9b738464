"""Every process the benchmark starts, and how it is stopped (by PID, even on Ctrl-C).

Workers run in their own session so a Ctrl-C at the terminal reaches only the runner; the
runner then stops each worker itself: SIGTERM to the worker, and SIGKILL to whatever of its
process tree is left after the grace period.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Started:
    """A process we started, with its log file."""

    def __init__(self, name: str, cmd: Sequence[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.popen = subprocess.Popen(
            self.cmd,
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        self._tree: set[int] = {self.pid}

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tree(self) -> list[psutil.Process]:
        """The process and all its descendants now (remembered for the final sweep)."""
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        self._tree.update(p.pid for p in procs)
        return procs

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def stop(self, grace_s: float = 5.0) -> None:
        self.tree()
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while self.alive() and time.monotonic() < deadline:
                self.tree()
                time.sleep(0.05)
        for pid in sorted(self._tree):
            _kill(pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        self._log.close()


def _kill(pid: int) -> None:
    try:
        proc = psutil.Process(pid)
        if proc.status() != psutil.STATUS_ZOMBIE:
            proc.kill()
    except psutil.NoSuchProcess:
        return


class Registry:
    """Remembers what was started so a failure or Ctrl-C still stops all of it."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Started] = []
        self._count = 0

    def spawn(self, name: str, cmd: Sequence[str], env: dict[str, str]) -> Started:
        self._count += 1
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        proc = Started(name, cmd, child_env(env), self.log_dir / f"{self._count:04d}-{safe}.log")
        self.started.append(proc)
        return proc

    def stop(self, proc: Started) -> None:
        proc.stop()
        if proc in self.started:
            self.started.remove(proc)

    def stop_all(self) -> None:
        while self.started:
            self.stop(self.started[-1])


def end_run(registry: Registry, server: Any, logs: Path, ok: bool, keep_logs: bool) -> int:
    """A benchmark command's last step: stop every process it started (workers, then its
    redis-server), keep the logs only when asked or when something failed, return the exit
    code (130 after an interrupt)."""
    registry.stop_all()
    if server is not None:
        server.stop()
    if ok and not keep_logs:
        shutil.rmtree(logs, ignore_errors=True)
    else:
        print(f"process logs kept in {logs}", file=sys.stderr)
    return 0 if ok else 130
