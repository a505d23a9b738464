"""Run real worker processes (celeriac or Celery) for tests, and always clean them up."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

TESTS_DIR = Path(__file__).resolve().parent.parent
ROOT = TESTS_DIR.parent


def subprocess_env(broker_url: str, backend_url: str | None = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["CELERIAC_BROKER_URL"] = broker_url
    env["CELERIAC_RESULT_BACKEND"] = backend_url or broker_url
    env["PYTHONPATH"] = os.pathsep.join(
        [str(TESTS_DIR / "support"), str(ROOT / "src"), env.get("PYTHONPATH", "")]
    )
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.log():
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited ({self.process.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"worker never logged {text!r}:\n{self.log()}")
            time.sleep(0.05)

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signum)

    def wait(self, timeout_s: float = 20.0) -> int:
        return self.process.wait(timeout_s)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM, then SIGKILL; then kill any child it left behind (by PID)."""
        kids = self.children()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for kid in kids:
            with contextlib.suppress(psutil.NoSuchProcess):
                kid.kill()


def start_celeriac_worker(
    app: str,
    broker_url: str,
    *args: str,
    backend_url: str | None = None,
    ready_text: str = "ready.",
    env_extra: dict[str, str] | None = None,
    wait_ready: bool = True,
) -> WorkerProcess:
    return _start(
        [sys.executable, "-m", "celeriac", "-A", app, "worker", *args],
        broker_url,
        backend_url,
        ready_text,
        env_extra,
        wait_ready,
    )


def start_celery_worker(
    app: str,
    broker_url: str,
    *args: str,
    backend_url: str | None = None,
    env_extra: dict[str, str] | None = None,
) -> WorkerProcess:
    return _start(
        [sys.executable, "-m", "celery", "-A", app, "worker", *args],
        broker_url,
        backend_url,
        "ready.",
        env_extra,
        True,
    )


def _start(
    cmd: Sequence[str],
    broker_url: str,
    backend_url: str | None,
    ready_text: str,
    env_extra: dict[str, str] | None,
    wait_ready: bool,
) -> WorkerProcess:
    fd, log_name = tempfile.mkstemp(prefix="worker-", suffix=".log")
    log_file = os.fdopen(fd, "wb")
    env = subprocess_env(broker_url, backend_url, **(env_extra or {}))
    process = subprocess.Popen(
        list(cmd),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=str(TESTS_DIR / "support"),
    )
    log_file.close()
    worker = WorkerProcess(process, Path(log_name))
    if wait_ready:
        try:
            worker.wait_for_log(ready_text)
        except BaseException:
            worker.stop()
            raise
    return worker


def run_solo_pool(
    app: Any, done: threading.Event, *, multiplier: int, window_s: float, what: Any = ""
) -> None:
    """Run a solo pool in this process over *app*'s ``celery`` queue until *done* is set
    (at most 30 s; the failure message shows ``what()``), then stop it warm."""
    from celeriac.worker.pools.solo import SoloPool
    from celeriac.worker.runtime import WorkerRuntime

    runtime = WorkerRuntime(
        app,
        "solo@host",
        "solo",
        1,
        ["celery"],
        prefetch_multiplier=multiplier,
        prefetch_window_s=window_s,
    )
    runner = threading.Thread(target=SoloPool(runtime).run)
    runner.start()
    try:
        assert done.wait(30), f"timed out: {what() if callable(what) else what}"
    finally:
        runtime.stop.warm.set()
        runner.join(10)
