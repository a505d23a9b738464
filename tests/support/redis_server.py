"""Start a real redis-server on a free loopback port, and stop it (by PID) afterwards."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

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
        stop_process(self.process)

    def restart(self) -> None:
        """Stop and start again on the same port (persistence depends on extra_args)."""
        self.stop()
        self.process = _spawn(self.port, self.workdir, self.extra_args)
        wait_pong(_ping_client(self.port), self.process)


DEBIAN_REDIS = "/usr/bin/redis-server"  # where Debian's package puts it, if not on PATH


def redis_binary() -> str:
    found = shutil.which("redis-server") or (DEBIAN_REDIS if os.path.exists(DEBIAN_REDIS) else None)
    if found is None:
        raise RuntimeError(
            "redis-server is not installed: apt-get install redis-server (.ci/run does)"
        )
    return found


def server_args(port: int, workdir: str | Path, extra: Sequence[str] = ()) -> list[str]:
    """A redis-server command line: loopback only, nothing saved to disk, in the foreground,
    then *extra*."""
    return [
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
        str(workdir),
        "--daemonize",
        "no",
        *extra,
    ]


def spawn(args: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start *args* quietly in a session of its own: a Ctrl-C meant for the test or benchmark
    run does not reach it; it is stopped by PID (stop_process) like every process we start."""
    return subprocess.Popen(
        list(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate *process* and wait for it; kill it when it does not go within 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def wait_pong(
    client: redis.Redis, process: subprocess.Popen[bytes], timeout_s: float = 10.0
) -> None:
    """Wait until the server *process* answers PING on *client* (closed afterwards)."""
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if process.poll() is not None:
                port = client.connection_pool.connection_kwargs.get("port")
                raise RuntimeError(f"redis-server exited with {process.returncode} on port {port}")
            try:
                if client.ping():
                    return
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
    finally:
        client.close()


def _ping_client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2)


def _spawn(port: int, workdir: str, extra_args: list[str]) -> subprocess.Popen[bytes]:
    return spawn(server_args(port, workdir, ["--loglevel", "warning", *extra_args]))


def start_redis(extra_args: list[str] | None = None) -> RedisServer:
    workdir = tempfile.mkdtemp(prefix="celeriac-redis-")
    port = free_port()
    extra = list(extra_args or [])
    process = _spawn(port, workdir, extra)
    wait_pong(_ping_client(port), process)
    return RedisServer(port, process, workdir, extra)


def cleanup(server: RedisServer) -> None:
    server.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)


__all__ = [
    "RedisServer",
    "cleanup",
    "free_port",
    "redis_binary",
    "server_args",
    "spawn",
    "start_redis",
    "stop_process",
    "wait_pong",
]
