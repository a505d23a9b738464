"""Tasks for the stamping tests, defined by one function on any app with Celery's API: the
celeriac worker imports this module, the Celery worker celery_stamp_tasks.

``report`` returns the stamps its request carries; ``hold`` keeps a one-slot worker busy
until the test pushes to a Redis list, so tasks sent meanwhile wait in the queue."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import redis

from celeriac import Celery

HOLD_S = 30


@dataclass(frozen=True)
class StampTasks:
    report: Any
    add: Any
    hold: Any


def define_tasks(app: Any) -> StampTasks:
    implementation = type(app).__module__.split(".")[0]
    task = functools.partial(app.task, shared=False) if implementation == "celery" else app.task

    @task(name="stamp.report", bind=True)
    def report(self: Any, *args: Any) -> dict[str, Any]:
        request = self.request
        names = sorted(request.stamped_headers or [])
        stamps = request.stamps or {}
        return {"stamped_headers": names, "stamps": {name: stamps.get(name) for name in names}}

    @task(name="stamp.add")
    def add(x: int, y: int) -> int:
        return x + y

    @task(name="stamp.hold")
    def hold(key: str) -> str:
        url = os.environ.get("CELERIAC_RESULT_BACKEND") or os.environ["CELERIAC_BROKER_URL"]
        client = redis.Redis.from_url(url)
        try:
            client.rpush(f"{key}:started", "yes")
            return "released" if client.blpop([key], timeout=HOLD_S) else "timed out"
        finally:
            client.close()

    return StampTasks(report, add, hold)


app = Celery("stamp_tasks")
tasks = define_tasks(app)
