"""The benchmark's own redis-server: the tests' helper (tests/support/redis_server.py: a free
loopback port, no persistence, stopped by PID), with what the benchmark adds to it."""

from __future__ import annotations

import redis

from tests.support.redis_server import cleanup, start_redis


class RedisServer:
    """One redis-server process owned by the benchmark; ``stop()`` ends exactly that PID."""

    def __init__(self) -> None:
        self._server = start_redis()
        self.port = self._server.port
        self.pid = self._server.process.pid

    def url(self, db: int = 0) -> str:
        return self._server.url(db)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=2)

    def version(self) -> str:
        info = self.client().info("server")
        return str(info.get("redis_version", "?"))

    def flush(self) -> None:
        self.client().flushall()

    def stop(self) -> None:
        cleanup(self._server)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
