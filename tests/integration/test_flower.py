"""Real Flower (the ``flower`` package) monitors a celeriac worker, unchanged.

Flower learns about workers from remote control (``inspect stats``, ``active_queues``,
``registered``, ...) and about tasks from events alone. The worker starts without ``-E``:
Flower's own periodic ``enable_events`` broadcast turns its task events on.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery
from tests.support.workers import WorkerProcess


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Flower:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())

    def wait_for(self, path: str, test: Callable[[Any], bool], timeout_s: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"flower exited:\n{self.log()}"
            with contextlib.suppress(urllib.error.URLError, ConnectionError):
                last = self.get(path)
                if test(last):
                    return last
            time.sleep(0.2)
        raise AssertionError(f"flower's {path} never matched; last: {last}\n{self.log()}")


@pytest.fixture
def flower(redis_url: str) -> Iterator[Flower]:
    port = free_port()
    fd, log_name = tempfile.mkstemp(prefix="flower-", suffix=".log")
    env = dict(os.environ, FLOWER_UNAUTHENTICATED_API="1")
    with os.fdopen(fd, "wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                f"--broker={redis_url}",
                "flower",
                f"--port={port}",
                "--address=127.0.0.1",
                "--inspect_timeout=3000",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tempfile.gettempdir(),
        )
    try:
        yield Flower(process, port, Path(log_name))
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(5)
        os.unlink(log_name)


def test_flower_sees_the_worker_and_its_tasks(
    flower: Flower,
    worker_factory: Callable[..., WorkerProcess],
    redis_url: str,
    backend_url: str,
) -> None:
    node = "flowered@localhost"
    worker = worker_factory("core_tasks", "-P", "prefork", "-c", "2", "-n", node)  # no -E

    workers = flower.wait_for(
        "/api/workers?refresh=1",
        lambda body: node in body and "stats" in body[node] and "registered" in body[node],
    )
    info = workers[node]
    assert info["stats"]["pool"]["implementation"] == "prefork"
    assert info["stats"]["pool"]["max-concurrency"] == 2
    assert info["stats"]["pid"] == worker.pid
    assert "core.add" in info["registered"]
    assert [q["name"] for q in info["active_queues"]] == ["celery"]

    # Flower's periodic enable_events reaches the worker, which then sends task events
    worker.wait_for_log("Events of group {task} enabled by remote.", timeout_s=15)
    client = Celery("flower_client", broker=redis_url, backend=backend_url)
    try:
        ok = client.send_task("core.add", (20, 22))
        bad = client.send_task("core.fail_builtin", ("no",))
        assert ok.get(timeout=10) == 42
        with pytest.raises(ValueError):
            bad.get(timeout=10)
    finally:
        client.close()

    def finished(body: Any) -> bool:
        return body.get(ok.id, {}).get("state") == "SUCCESS" and bool(
            body.get(bad.id, {}).get("state") == "FAILURE"
        )

    tasks = flower.wait_for("/api/tasks", finished, timeout_s=10)
    assert tasks[ok.id]["name"] == "core.add"
    assert tasks[ok.id]["result"] == "42"
    assert tasks[ok.id]["args"] == "(20, 22)"
    assert tasks[ok.id]["worker"] == node
    assert tasks[bad.id]["exception"] == "ValueError('no')"

    # the dashboard's worker row comes from heartbeats: online, with the processed count
    dashboard = flower.wait_for(
        "/api/workers?status=1", lambda body: body.get(node) is True, timeout_s=10
    )
    assert dashboard[node] is True
