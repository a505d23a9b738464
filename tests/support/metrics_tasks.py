"""Tasks for the metrics and health tests (broker from CELERIAC_BROKER_URL)."""

from __future__ import annotations

import os
import time
from typing import Any

from celeriac import Celery

app = Celery("metrics_tasks")


@app.task(name="metrics.add")
def add(x: int, y: int) -> dict[str, int]:
    time.sleep(0.01)  # long enough for siblings to take their share
    return {"sum": x + y, "pid": os.getpid()}


@app.task(name="metrics.fail")
def fail(message: str) -> None:
    raise ValueError(message)


@app.task(name="metrics.flaky", bind=True, max_retries=5)
def flaky(self: Any, retries_wanted: int) -> int:
    if self.request.retries < retries_wanted:
        raise self.retry(countdown=0)
    return int(self.request.retries)


@app.task(name="metrics.sleep")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
