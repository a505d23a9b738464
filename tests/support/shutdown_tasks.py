"""Tasks for the shutdown and kill tests; imported by worker subprocesses (broker from
CELERIAC_BROKER_URL). A gate task marks its start and waits until the test opens it, so the
test controls exactly when it ends (no clock involved)."""

from __future__ import annotations

import asyncio
import os
import time

import redis

from celeriac import Celery

app = Celery("shutdown_tasks")
app.conf.broker_transport_options = {"visibility_timeout": 3600}  # recovery never by timeout

_redis: redis.Redis | None = None


def _r() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(os.environ["CELERIAC_BROKER_URL"])
    return _redis


@app.task(name="shut.gate")
def gate(key: str) -> str:
    """Run until the key ``open:<key>`` exists (at most 60 s), counting each run."""
    r = _r()
    r.incr(f"runs:{key}")
    r.set(f"started:{key}", os.getpid())
    for _ in range(1200):
        if r.exists(f"open:{key}"):
            return "opened"
        time.sleep(0.05)
    return "timed out"


@app.task(name="shut.agate")
async def agate(key: str) -> str:
    r = _r()
    r.incr(f"runs:{key}")
    r.set(f"started:{key}", os.getpid())
    for _ in range(1200):
        if r.exists(f"open:{key}"):
            return "opened"
        await asyncio.sleep(0.05)
    return "timed out"


@app.task(name="shut.late_gate", acks_late=True)
def late_gate(key: str) -> str:
    return str(gate(key))


@app.task(name="shut.count")
def count(key: str) -> int:
    return int(_r().incr(f"runs:{key}"))


@app.task(name="shut.sqlite_gate")
def sqlite_gate(path: str) -> str:
    """The gate for tests without Redis: files mark the start and open it."""
    with open(f"{path}.started", "w") as mark:
        mark.write(str(os.getpid()))
    for _ in range(1200):
        if os.path.exists(f"{path}.open"):
            return "opened"
        time.sleep(0.05)
    return "timed out"


@app.task(name="shut.touch")
def touch(path: str) -> None:
    with open(path, "a") as mark:
        mark.write(f"{os.getpid()}\n")
