"""Tasks for the reliability interop tests, defined with celeriac; celery_rel_tasks.py defines
the same names with the real Celery. Every run records, in the broker's Redis, which side ran
it, with which ``retries`` header, in which pid (``runs:<key>``, one line a run)."""

from __future__ import annotations

import os
import time

import redis

from celeriac import Celery, Task

SIDE = "celeriac"
OTHER_QUEUE = "to_celery"  # where this side sends a retry: the Celery worker's queue

app = Celery("interop_rel_tasks")
app.conf.task_acks_late = True
app.conf.broker_transport_options = {
    "visibility_timeout": float(os.environ.get("TEST_VISIBILITY_TIMEOUT", "3600"))
}

_clients: dict[int, redis.Redis] = {}


def _redis() -> redis.Redis:
    client = _clients.get(os.getpid())
    if client is None:
        client = _clients[os.getpid()] = redis.Redis.from_url(os.environ["CELERIAC_BROKER_URL"])
    return client


def _record(key: str, retries: int) -> None:
    _redis().rpush(f"runs:{key}", f"{SIDE} {retries} {os.getpid()}")


@app.task(bind=True, name="irel.record")
def record(self: Task, key: str, seconds: float = 0.0) -> str:
    _record(key, int(self.request.retries))
    time.sleep(seconds)
    return SIDE


@app.task(bind=True, name="irel.pingpong", max_retries=10)
def pingpong(self: Task, key: str, limit: int) -> list[str]:
    """Retry on the other side's queue until the retries header reaches *limit*."""
    retries = int(self.request.retries)
    _record(key, retries)
    if retries < limit:
        raise self.retry(countdown=0.2, queue=OTHER_QUEUE)
    lines = _redis().lrange(f"runs:{key}", 0, -1)
    return [x.decode() if isinstance(x, bytes) else str(x) for x in lines]
