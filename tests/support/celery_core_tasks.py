"""The same task names as core_tasks, defined with the real Celery (for interop tests)."""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery

_url = os.environ.get("CELERIAC_BROKER_URL", "redis://127.0.0.1:6379/0")
app = Celery(
    "celery_core_tasks",
    broker=_url,
    backend=os.environ.get("CELERIAC_RESULT_BACKEND", _url),
)
app.conf.task_routes = {"core.routed.*": {"queue": "routed"}}
app.conf.worker_hijack_root_logger = False


class CustomError(Exception):
    pass


@app.task(name="core.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="core.echo")
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


@app.task(name="core.kwonly")
def kwonly(a: int, *, b: int, c: int = 3) -> list[int]:
    return [a, b, c]


@app.task(name="core.fail")
def fail(message: str, code: int = 0) -> None:
    from core_tasks import CustomError as SharedError

    raise SharedError(message, code)


@app.task(name="core.fail_builtin")
def fail_builtin(message: str) -> None:
    raise ValueError(message)


@app.task(name="core.pid")
def pid() -> int:
    return os.getpid()


@app.task(name="core.sleep")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task(name="core.routed.ping")
def routed_ping() -> str:
    return "pong"


@app.task(name="core.arg_types")
def arg_types(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """The type of each argument as the task sees it (how non-JSON types cross the wire)."""
    return {
        "args": [type(value).__name__ for value in args],
        "kwargs": {key: type(value).__name__ for key, value in kwargs.items()},
    }
