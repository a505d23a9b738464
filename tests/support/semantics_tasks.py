"""Tasks for the task-semantics tests (request fields, retry, class-based and pydantic tasks,
results that are results, Reject, custom remote-control commands); celery_semantics_tasks.py
defines the same names with the real Celery."""

from __future__ import annotations

import os
from typing import Any

import redis
from pydantic import BaseModel, ValidationInfo, field_validator
from request_probe import request_fields

from celeriac import Celery, Task, group
from celeriac.errors import Reject
from celeriac.worker.control import control_command, inspect_command

_broker_url = os.environ.get("CELERIAC_BROKER_URL", "redis://127.0.0.1:6379/0")
app = Celery("semantics_tasks")
app.conf.task_routes = {"sem.*": {"queue": os.environ.get("SEM_QUEUE", "celery")}}


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
    """Retry once, then report the request of the second run."""
    if self.request.retries == 0:
        raise self.retry(countdown=0)
    return request_fields(self)


@app.task(name="sem.retry_to_kwargs", bind=True)
def retry_to_kwargs(self: Task, x: int, y: int = 0) -> list[Any]:
    """Called with args; retried with kwargs only (the args must not come back too)."""
    if self.request.retries == 0:
        raise self.retry(kwargs={"x": x * 10, "y": y * 10}, countdown=0)
    return [x, y, list(self.request.args), dict(self.request.kwargs)]


@app.task(name="sem.retry_to_args", bind=True)
def retry_to_args(self: Task, x: int, y: int = 0) -> list[Any]:
    """Called with kwargs; retried with args only (the kwargs must not come back too)."""
    if self.request.retries == 0:
        raise self.retry(args=(x + 1, y + 1), countdown=0)
    return [x, y, list(self.request.args), dict(self.request.kwargs)]


@app.task(name="sem.retry_replace_both", bind=True)
def retry_replace_both(self: Task, *args: Any, **kwargs: Any) -> list[Any]:
    """Retried with both: they replace the first call's arguments entirely."""
    if self.request.retries == 0:
        raise self.retry(args=("new",), kwargs={"k": "new"}, countdown=0)
    return [list(args), kwargs]


# class-based tasks
class Multiply(Task):
    name = "sem.class_multiply"

    def run(self, x: int, y: int) -> int:
        return x * y


class FlakyClass(Task):
    name = "sem.class_autoretry"
    autoretry_for = (KeyError,)
    max_retries = 3
    default_retry_delay = 0
    retry_jitter = False

    def run(self, fail_times: int) -> int:
        if self.request.retries < fail_times:
            raise KeyError(f"attempt {self.request.retries}")
        return int(self.request.retries)


class Wrapping(Task):
    """A base whose ``__call__`` wraps every run (as Celery lets a base class do)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return {"wrapped": super().__call__(*args, **kwargs)}


app.register_task(Multiply())
app.register_task(FlakyClass())


@app.task(name="sem.wrapped", base=Wrapping)
def wrapped(x: int) -> int:
    return x + 1


# results that are results
@app.task(name="sem.returns_result")
def returns_result(x: int, y: int) -> Any:
    return add.delay(x, y)


@app.task(name="sem.returns_group")
def returns_group(n: int) -> Any:
    return group(add.s(i, i) for i in range(n)).apply_async()


# errors
@app.task(name="sem.reject", acks_late=True)
def reject(reason: str) -> None:
    raise Reject(reason, requeue=False)


# pydantic tasks
class Point(BaseModel):
    x: int
    y: int


class Scaled(BaseModel):
    value: int

    @field_validator("value")
    @classmethod
    def scale(cls, value: int, info: ValidationInfo) -> int:
        return value * int((info.context or {}).get("scale", 1))


@app.task(name="sem.pyd_shift", pydantic=True)
def pyd_shift(point: Point, by: int) -> Point:
    return Point(x=point.x + by, y=point.y + by)


@app.task(name="sem.pyd_optional", pydantic=True)
def pyd_optional(point: Point | None = None) -> str:
    return type(point).__name__


@app.task(name="sem.pyd_strict", pydantic=True, pydantic_strict=True)
def pyd_strict(point: Point) -> int:
    return point.x


@app.task(name="sem.pyd_context", pydantic=True, pydantic_context={"scale": 3})
def pyd_context(scaled: Scaled) -> int:
    return scaled.value


@app.task(
    name="sem.pyd_dump",
    pydantic=True,
    pydantic_dump_kwargs={"exclude": {"y"}},
)
def pyd_dump(x: int) -> Point:
    return Point(x=x, y=0)


# custom remote-control commands
@control_command(args=[("n", int)], signature="<n>")
def sem_bump(state: Any, n: int = 1) -> dict[str, Any]:
    """Say how much to bump by (a control command answers {"ok": ...})."""
    return {"ok": f"bumped by {n}"}


@inspect_command(name="sem_where")
def where_command(state: Any) -> dict[str, Any]:
    return {"hostname": state.hostname, "has_app": state.app is app}


@inspect_command(alias="sem_broken_alias")
def sem_broken(state: Any) -> None:
    raise RuntimeError("this command is broken")
