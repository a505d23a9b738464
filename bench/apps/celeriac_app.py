"""celeriac: the bench tasks (results follow BENCH_RESULTS)."""

from __future__ import annotations

import asyncio
import time

from celeriac import Celeriac

from .counter import RESULTS, URL, burn_cpu, record

app = Celeriac("bench", broker=URL, backend=URL)
app.conf.task_ignore_result = not RESULTS


@app.task(name="bench.noop")
def noop(x: int) -> int:
    started = time.time()
    record(started)
    return x


@app.task(name="bench.cpu")
def cpu(iterations: float) -> int:
    started = time.time()
    value = burn_cpu(int(iterations))
    record(started)
    return value


@app.task(name="bench.io_wait")
def io_wait(seconds: float) -> float:
    started = time.time()
    time.sleep(seconds)  # cooperative under gevent/eventlet (patched)
    record(started)
    return seconds


@app.task(name="bench.aio_wait")
async def aio_wait(seconds: float) -> float:
    started = time.time()
    await asyncio.sleep(seconds)
    record(started)
    return seconds
