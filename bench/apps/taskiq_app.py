"""taskiq: RedisStreamBroker (taskiq-redis' recommended broker), Redis results if asked."""

from __future__ import annotations

import time

from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

from .counter import RESULTS, URL, record_async

broker = RedisStreamBroker(url=URL)
if RESULTS:
    broker = broker.with_result_backend(RedisAsyncResultBackend(redis_url=URL))


@broker.task(task_name="noop")
async def noop(x: int) -> int:
    started = time.time()
    await record_async(started)
    return x
