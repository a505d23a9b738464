"""Huey: RedisHuey (blocking dequeue); tuned = notify_result (BLPOP instead of polling)."""

from __future__ import annotations

import time

from huey import RedisHuey

from .counter import RESULTS, TUNED, URL, record

huey = RedisHuey("bench", url=URL, results=RESULTS, notify_result=TUNED)


@huey.task(name="noop")
def noop(x: int) -> int:
    started = time.time()
    record(started)
    return x
