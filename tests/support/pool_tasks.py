"""Tasks for the pool tests; imported by worker subprocesses (broker from CELERIAC_BROKER_URL).

Where a task ran and when is read from ``AsyncResult.place`` (pid, thread, greenlet or asyncio
task, ``started_at``/``finished_at``), so most tasks here only wait.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import redis

from celeriac import Celery

app = Celery("pool_tasks")

_redis_lock = threading.Lock()
_redis: redis.Redis | None = None


def task_redis() -> redis.Redis:
    """A client of the test Redis for tasks that wait on Redis themselves."""
    global _redis
    with _redis_lock:
        if _redis is None:
            _redis = redis.Redis.from_url(
                os.environ["CELERIAC_BROKER_URL"], client_name=f"pool_tasks.{os.getpid()}"
            )
        return _redis


@app.task(name="pool.where", bind=True)
def where(self: Any) -> dict[str, Any]:
    return dict(self.request.place)


@app.task(name="pool.awhere", bind=True)
async def awhere(self: Any) -> dict[str, Any]:
    await asyncio.sleep(0)
    return dict(self.request.place)


@app.task(name="pool.nap")
def nap(seconds: float) -> float:
    """Wait on the clock: under gevent and eventlet ``time.sleep`` is patched and yields."""
    time.sleep(seconds)
    return seconds


@app.task(name="pool.anap")
async def anap(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@app.task(name="pool.slow", bind=True, acks_late=True)
def slow(self: Any, seconds: float) -> str:
    """Say it started (the test waits for that line), then take a while."""
    print(f"pool_tasks: started {self.request.id}", flush=True)
    time.sleep(seconds)
    return "finished"


@app.task(name="pool.aslow", bind=True, acks_late=True)
async def aslow(self: Any, seconds: float) -> str:
    print(f"pool_tasks: started {self.request.id}", flush=True)
    await asyncio.sleep(seconds)
    return "finished"


@app.task(name="pool.blpop")
def blpop(key: str, timeout_s: float) -> str | None:
    """Block on Redis until *key* gets an item: only cooperative I/O lets others run."""
    found = task_redis().blpop([key], timeout=timeout_s)
    if found is None:
        return None
    item = found[1]
    return item.decode() if isinstance(item, bytes) else str(item)


@app.task(name="pool.push")
def push(key: str, count: int) -> int:
    return int(task_redis().rpush(key, *[f"item-{i}" for i in range(count)]))
