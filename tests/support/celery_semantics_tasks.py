"""The task names of semantics_tasks.py, defined with the real Celery (for interop tests)."""

from __future__ import annotations

import os
from typing import Any

import redis
from celery import Celery, Task, group
from celery.exceptions import Reject
from pydantic import BaseModel
from request_probe import request_fields

_url = _broker_url = os.environ.get("CELERIAC_BROKER_URL", "redis://127.0.0.1:6379/0")
app = Celery(
    "celery_semantics_tasks",
    broker=_url,
    backend=os.environ.get("CELERIAC_RESULT_BACKEND", _url),
)
app.conf.task_routes = {"sem.*": {"queue": os.environ.get("SEM_QUEUE", "celery")}}
app.conf.worker_hijack_root_logger = False


@app.task(name="sem.fields", bind=True)
def fields(self: Task, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return request_fields(self)


@app.task(name="sem.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="sem.block")
def block(key: str) -> str:
    """Say it started (``<key>:started``), then wait for ``<key>:go`` (at most 30 s)."""
    client = redis.Redis.from_url(_broker_url)
    client.rpush(f"{key}:started", os.getpid())
    released = client.blpop([f"{key}:go"], timeout=30)
    client.close()
    return "released" if released else "timed out"


@app.task(name="sem.block_tracked", track_started=True)
def block_tracked(key: str) -> str:
    """``sem.block``, storing STARTED as it starts."""
    return str(block(key))


@app.task(name="sem.retry_fields", bind=True)
def retry_fields(self: Task) -> dict[str, Any]:
    if self.request.retries == 0:
        raise self.retry(countdown=0)
    return request_fields(self)


@app.task(name="sem.retry_to_kwargs", bind=True)
def retry_to_kwargs(self: Task, x: int, y: int = 0) -> list[Any]:
    if self.request.retries == 0:
        raise self.retry(kwargs={"x": x * 10, "y": y * 10}, countdown=0)
    return [x, y, list(self.request.args), dict(self.request.kwargs)]


@app.task(name="sem.retry_to_args", bind=True)
def retry_to_args(self: Task, x: int, y: int = 0) -> list[Any]:
    if self.request.retries == 0:
        raise self.retry(args=(x + 1, y + 1), countdown=0)
    return [x, y, list(self.request.args), dict(self.request.kwargs)]


@app.task(name="sem.retry_replace_both", bind=True)
def retry_replace_both(self: Task, *args: Any, **kwargs: Any) -> list[Any]:
    if self.request.retries == 0:
        raise self.retry(args=("new",), kwargs={"k": "new"}, countdown=0)
    return [list(args), kwargs]


class Multiply(Task):
    name = "sem.class_multiply"

    def run(self, x: int, y: int) -> int:
        return x * y


app.register_task(Multiply())


@app.task(name="sem.returns_result")
def returns_result(x: int, y: int) -> Any:
    return add.delay(x, y)


@app.task(name="sem.returns_group")
def returns_group(n: int) -> Any:
    return group(add.s(i, i) for i in range(n)).apply_async()


@app.task(name="sem.reject", acks_late=True)
def reject(reason: str) -> None:
    raise Reject(reason, requeue=False)


class Point(BaseModel):
    x: int
    y: int


@app.task(name="sem.pyd_shift", pydantic=True)
def pyd_shift(point: Point, by: int) -> Point:
    return Point(x=point.x + by, y=point.y + by)
