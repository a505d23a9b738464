"""Tasks for the time-limit tests; imported by worker subprocesses (broker from
CELERIAC_BROKER_URL). Each marks its start in Redis so a test waits on that, not on a clock."""

from __future__ import annotations

import asyncio
import os
import time

import redis

from celeriac import Celery, SoftTimeLimitExceeded

app = Celery("limit_tasks")

_redis: redis.Redis | None = None


def _r() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(os.environ["CELERIAC_BROKER_URL"])
    return _redis


def _started(key: str) -> None:
    _r().set(f"started:{key}", os.getpid())


@app.task(name="limits.soft_caught")
def soft_caught(key: str) -> str:
    """Waits in short steps until the soft limit, catches it, and returns."""
    _started(key)
    try:
        for _ in range(600):
            time.sleep(0.05)
    except SoftTimeLimitExceeded:
        return "soft limit caught"
    return "never interrupted"


@app.task(name="limits.soft_by_option", soft_time_limit=0.5)
def soft_by_option(key: str) -> str:
    """The soft limit comes from the task's own option."""
    return str(soft_caught(key))


@app.task(name="limits.forever")
def forever(key: str) -> str:
    """Runs for 30 s in short steps unless stopped (hard limit or terminate)."""
    _started(key)
    for _ in range(600):
        time.sleep(0.05)
    return "never stopped"


@app.task(name="limits.stuck")
def stuck(key: str) -> str:
    """One 30 s call into C: a pool thread cannot be interrupted inside it."""
    _started(key)
    time.sleep(30)
    return "never stopped"


@app.task(name="limits.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="limits.asoft_caught")
async def asoft_caught(key: str) -> str:
    _started(key)
    try:
        await asyncio.sleep(30)
    except SoftTimeLimitExceeded:
        return "soft limit caught"
    return "never interrupted"


@app.task(name="limits.aforever")
async def aforever(key: str) -> str:
    _started(key)
    await asyncio.sleep(30)
    return "never stopped"
