"""Tasks for the events tests: one of each outcome a task event reports."""

from __future__ import annotations

from typing import Any

from celeriac import Celery, Reject

app = Celery("event_tasks")


@app.task(name="ev.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="ev.retry_once", bind=True)
def retry_once(self: Any) -> str:
    if self.request.retries == 0:
        raise self.retry(exc=KeyError("first run"), countdown=0)
    return "retried"


@app.task(name="ev.reject")
def reject() -> None:
    raise Reject("not this one", requeue=False)
