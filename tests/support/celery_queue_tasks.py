"""The tasks of queue_tasks, defined with the real Celery and the same task_queues (for
interop tests: a celeriac client routes, a Celery worker consumes)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from queue_tasks import configure  # tests/support is on the worker's path

_url = os.environ.get("CELERIAC_BROKER_URL", "redis://127.0.0.1:6379/0")
app = Celery(
    "celery_queue_tasks",
    broker=_url,
    backend=os.environ.get("CELERIAC_RESULT_BACKEND", _url),
)
configure(app.conf)
app.conf.worker_hijack_root_logger = False


def _where(task: Any) -> dict[str, Any]:
    info = task.request.delivery_info or {}
    return {"task": task.name, "routing_key": info.get("routing_key")}


@app.task(name="queues.encode", bind=True)
def encode(self: Any) -> dict[str, Any]:
    return _where(self)


@app.task(name="queues.report", bind=True)
def report(self: Any) -> dict[str, Any]:
    return _where(self)


@app.task(name="queues.plain", bind=True)
def plain(self: Any) -> dict[str, Any]:
    return _where(self)
