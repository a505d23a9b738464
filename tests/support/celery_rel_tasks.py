"""The tasks of interop_rel_tasks.py, defined with the real Celery (reliability interop)."""

from __future__ import annotations

import os
import time

import redis
from celery import Celery, Task

SIDE = "celery"
OTHER_QUEUE = "to_celeriac"  # where this side sends a retry: the celeriac worker's queue

_url = os.environ["CELERIAC_BROKER_URL"]
app = Celery("celery_rel_tasks", broker=_url, backend=os.environ.get("CELERIAC_RESULT_BACKEND"))
app.conf.worker_hijack_root_logger = False
app.conf.task_acks_late = True
app.conf.broker_transport_options = {
    "visibility_timeout": float(os.environ.get("TEST_VISIBILITY_TIMEOUT", "3600")),
    # sweep for abandoned messages every second, not every 100 s
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}

_clients: dict[int, redis.Redis] = {}


def _redis() -> redis.Redis:
    client = _clients.get(os.getpid())
    if client is None:
        client = _clients[os.getpid()] = redis.Redis.from_url(_url)
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
