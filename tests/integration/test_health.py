"""``/healthz`` and ``/readyz`` of real workers while their redis-server is frozen.

A private redis-server (never the session's) is paused with SIGSTOP: ``/readyz`` must turn
503 within 10 s, ``/healthz`` stays 200 (the process is up), and once Redis gets SIGCONT
``/readyz`` is 200 again within 10 s. On prefork every child's consume loop is watched
through the table the manager reads; on solo the worker's own loop.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support.metrics_http import get, scrape, wait_for
from tests.support.redis_server import RedisServer, cleanup, free_port, start_redis
from tests.support.workers import TESTS_DIR, start_celeriac_worker, subprocess_env


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    server = start_redis()
    try:
        yield server
    finally:
        if server.process.poll() is None:
            os.kill(server.process.pid, signal.SIGCONT)  # never leave it frozen
        cleanup(server)


@pytest.mark.parametrize(("pool", "concurrency"), [("prefork", 2), ("solo", 1)], ids=str)
def test_readyz_fails_while_redis_is_frozen_and_recovers(
    private_redis: RedisServer, pool: str, concurrency: int
) -> None:
    port = free_port()
    worker = start_celeriac_worker(
        "metrics_tasks",
        private_redis.url(0),
        "-P",
        pool,
        "-c",
        str(concurrency),
        "--metrics-port",
        str(port),
        "--metrics-ready-within",
        "3",
        backend_url=private_redis.url(1),
    )
    redis_pid = private_redis.process.pid
    try:
        wait_for(lambda: get(port, "/readyz")[0] == 200, "/readyz 200 at start")
        assert get(port, "/healthz") == (200, "ok\n")
        os.kill(redis_pid, signal.SIGSTOP)
        try:
            took = wait_for(
                lambda: get(port, "/readyz")[0] == 503, "/readyz 503 after SIGSTOP", 10.0
            )
            status, text = get(port, "/readyz")
            assert status == 503 and "not ready" in text, text
            assert get(port, "/healthz") == (200, "ok\n")
        finally:
            os.kill(redis_pid, signal.SIGCONT)
        wait_for(lambda: get(port, "/readyz")[0] == 200, "/readyz 200 after SIGCONT", 10.0)
        assert took < 10.0
        # the same answer as a metric (a loop may stumble once on a reply that came late)
        wait_for(lambda: scrape(port).total("celeriac_worker_ready") == 1, "ready metric 1", 10.0)
    finally:
        worker.stop()


def test_unknown_path_is_a_404_that_names_the_pages(private_redis: RedisServer) -> None:
    port = free_port()
    worker = start_celeriac_worker(
        "metrics_tasks",
        private_redis.url(0),
        "-P",
        "solo",
        "--metrics-port",
        str(port),
        backend_url=private_redis.url(1),
    )
    try:
        status, text = get(port, "/nope")
        assert status == 404 and "/metrics" in text and "/readyz" in text
    finally:
        worker.stop()


def test_status_exit_code(private_redis: RedisServer) -> None:
    """``celeriac status --exit-code``: 0 when every named worker answers and is ready, 1
    (naming the missing node) when one named with -d does not answer."""
    node = f"health1@{socket.gethostname()}"
    port = free_port()
    worker = start_celeriac_worker(
        "metrics_tasks",
        private_redis.url(0),
        "-P",
        "solo",
        "-n",
        node,
        "--metrics-port",
        str(port),
        backend_url=private_redis.url(1),
    )

    def status(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "celeriac", "-A", "metrics_tasks", "status", *args],
            env=subprocess_env(private_redis.url(0), private_redis.url(1)),
            cwd=str(TESTS_DIR / "support"),
            capture_output=True,
            text=True,
            timeout=60,
        )

    try:
        wait_for(lambda: get(port, "/readyz")[0] == 200, "/readyz 200 at start")
        ok = status("--exit-code", "-d", node)
        assert ok.returncode == 0, ok.stderr
        assert node in ok.stdout
        missing = f"nobody@{socket.gethostname()}"
        bad = status("--exit-code", "-d", f"{node},{missing}")
        assert bad.returncode == 1, bad.stdout + bad.stderr
        assert f"{missing}: no answer" in bad.stderr
        plain = status("-d", f"{node},{missing}")
        assert plain.returncode == 0, plain.stderr  # without --exit-code: Celery's behaviour
    finally:
        worker.stop()
