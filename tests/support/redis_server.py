"""Start a real redis-server on a free loopback port, and stop it (by PID) afterwards."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

import redis


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]
    workdir: str
    extra_args: list[str] = field(default_factory=list)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def restart(self) -> None:
        """Stop and start again on the same port (persistence depends on extra_args)."""
        self.stop()
        self.process = _spawn(self.port, self.workdir, self.extra_args)
        _wait_ready(self.port, self.process)


DEBIAN_REDIS = "/usr/bin/redis-server"  # where Debian's package puts it, if not on PATH


def redis_binary() -> str:
    found = shutil.which("redis-server") or (DEBIAN_REDIS if os.path.exists(DEBIAN_REDIS) else None)
    if found is None:
        raise RuntimeError(
            "redis-server is not installed: apt-get install redis-server (.ci/run does)"
        )
    return found


def _spawn(port: int, workdir: str, extra_args: list[str]) -> subprocess.Popen[bytes]:
    args = [
        redis_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        workdir,
        "--daemonize",
        "no",
        "--loglevel",
        "warning",
        *extra_args,
    ]
    # its own session: a Ctrl-C meant for the test or benchmark run does not reach it; it is
    # stopped by PID like every other process we start
    return subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def _wait_ready(port: int, process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2)
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode} on port {port}")
        try:
            if client.ping():
                client.close()
                return
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def start_redis(extra_args: list[str] | None = None) -> RedisServer:
    workdir = tempfile.mkdtemp(prefix="celeriac-redis-")
    port = free_port()
    extra = list(extra_args or [])
    process = _spawn(port, workdir, extra)
    _wait_ready(port, process)
    return RedisServer(port, process, workdir, extra)


def cleanup(server: RedisServer) -> None:
    server.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)


__all__ = ["RedisServer", "cleanup", "free_port", "redis_binary", "start_redis"]
