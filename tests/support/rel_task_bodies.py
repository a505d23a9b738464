"""The reliability interop tasks, written once and registered on either library's app
(interop_rel_tasks.py for celeriac, celery_rel_tasks.py for the real Celery). Every run
records, in the broker's Redis, which side ran it, with which ``retries`` header, in which
pid (``runs:<key>``, one line a run)."""

from __future__ import annotations

import os
import time
from typing import Any

import redis

_clients: dict[int, redis.Redis] = {}


def _redis() -> redis.Redis:
    client = _clients.get(os.getpid())
    if client is None:
        client = _clients[os.getpid()] = redis.Redis.from_url(os.environ["CELERIAC_BROKER_URL"])
    return client


def define_tasks(app: Any, side: str, other_queue: str) -> tuple[Any, Any]:
    """Register ``irel.record`` and ``irel.pingpong`` on *app*; *other_queue* is where this
    side sends a retry (the other library's worker's queue)."""

    def _record(key: str, retries: int) -> None:
        _redis().rpush(f"runs:{key}", f"{side} {retries} {os.getpid()}")

    @app.task(bind=True, name="irel.record")
    def record(self: Any, key: str, seconds: float = 0.0) -> str:
        _record(key, int(self.request.retries))
        time.sleep(seconds)
        return side

    @app.task(bind=True, name="irel.pingpong", max_retries=10)
    def pingpong(self: Any, key: str, limit: int) -> list[str]:
        """Retry on the other side's queue until the retries header reaches *limit*."""
        retries = int(self.request.retries)
        _record(key, retries)
        if retries < limit:
            raise self.retry(countdown=0.2, queue=other_queue)
        lines = _redis().lrange(f"runs:{key}", 0, -1)
        return [x.decode() if isinstance(x, bytes) else str(x) for x in lines]

    return record, pingpong
