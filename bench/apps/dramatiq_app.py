"""Dramatiq: RedisBroker with its default middleware, plus Results when BENCH_RESULTS=1."""

from __future__ import annotations

import time
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

from .counter import RESULTS, URL, record

broker = RedisBroker(url=URL)
if RESULTS:
    broker.add_middleware(Results(backend=RedisBackend(url=URL)))
dramatiq.set_broker(broker)


# store_results exists only with the Results middleware
_result_options: dict[str, Any] = {"store_results": True} if RESULTS else {}


@dramatiq.actor(actor_name="noop", max_retries=0, **_result_options)
def noop(x: int) -> int:
    started = time.time()
    record(started)
    return x
