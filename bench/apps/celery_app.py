"""Celery 5: the bench task on the Redis broker (and Redis results when BENCH_RESULTS=1)."""

from __future__ import annotations

import time

from celery import Celery

from .counter import RESULTS, URL, record

app = Celery("bench", broker=URL, backend=URL if RESULTS else None)
app.conf.update(
    task_ignore_result=not RESULTS,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop")
def noop(x: int) -> int:
    started = time.time()
    record(started)
    return x
