"""Counts finished tasks in Redis, independently of any task queue's own bookkeeping.

Each task makes one round trip: INCR of the done counter and SET of the last finish time,
pipelined. The task that sees count 1 also records when it started, so the runner can time
"first task started to last task finished" without polling.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis

DONE = "bench:done"
FIRST = "bench:first"
LAST = "bench:last"

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
RESULTS = os.environ.get("BENCH_RESULTS") == "1"
TUNED = os.environ.get("BENCH_TUNED") == "1"
SLOTS = int(os.environ.get("BENCH_SLOTS", "1"))

_sync: tuple[int, redis.Redis] | None = None
_async: dict[tuple[int, int], Any] = {}


def _client() -> redis.Redis:
    global _sync
    # one client per process: a forked child must not share its parent's socket
    if _sync is None or _sync[0] != os.getpid():
        _sync = (os.getpid(), redis.Redis.from_url(URL, max_connections=1000))
    return _sync[1]


def record(started: float) -> None:
    client = _client()
    pipe = client.pipeline(transaction=False)
    pipe.incr(DONE)
    pipe.set(LAST, repr(time.time()))
    count, _ = pipe.execute()
    if count == 1:
        client.set(FIRST, repr(started))


async def record_async(started: float) -> None:
    import asyncio

    key = (os.getpid(), id(asyncio.get_running_loop()))
    client = _async.get(key)
    if client is None:
        import redis.asyncio  # only the asyncio libraries pay for importing it

        client = _async[key] = redis.asyncio.Redis.from_url(URL, max_connections=1000)
    pipe = client.pipeline(transaction=False)
    pipe.incr(DONE)
    pipe.set(LAST, repr(time.time()))
    count, _ = await pipe.execute()
    if count == 1:
        await client.set(FIRST, repr(started))


def burn_cpu(iterations: int) -> int:
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total
