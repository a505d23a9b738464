"""Tasks for the canvas tests (chain, group, chord, map, callbacks), defined by one function
on any app with Celery's API: the celeriac worker imports this module, the Celery worker
imports celery_canvas_tasks (the same tasks on a real Celery app), and a test's client app
registers them too so ``add.s(...)`` builds signatures with the same names."""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from typing import Any

from celeriac import Celery


@dataclass(frozen=True)
class CanvasTasks:
    add: Any
    mul: Any
    tsum: Any
    identity: Any
    echo: Any
    noop: Any
    fail: Any
    on_error: Any
    spawn: Any
    slow_add: Any
    tagged: Any
    tally: Any


def define_tasks(app: Any) -> CanvasTasks:
    """Register the canvas tasks on *app* (celeriac or Celery) and return them."""
    implementation = type(app).__module__.split(".")[0]  # "celery" or "celeriac"
    # Celery shares decorated tasks with every app made later: keep each to its own app
    task = functools.partial(app.task, shared=False) if implementation == "celery" else app.task
    add, mul, tsum, identity, echo, noop = _plain_tasks(task)
    fail, on_error, spawn, slow_add = _workflow_tasks(task, add, identity)
    tagged, tally = _tagged_tasks(task, implementation)
    return CanvasTasks(
        add, mul, tsum, identity, echo, noop, fail, on_error, spawn, slow_add, tagged, tally
    )


def _plain_tasks(task: Any) -> tuple[Any, ...]:
    @task(name="canvas.add")
    def add(x: int, y: int) -> int:
        return x + y

    @task(name="canvas.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    @task(name="canvas.tsum")
    def tsum(values: list[Any]) -> int:
        return sum(_numbers(values))

    @task(name="canvas.identity")
    def identity(value: Any) -> Any:
        return value

    @task(name="canvas.echo")
    def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"args": list(args), "kwargs": kwargs}

    @task(name="canvas.noop")
    def noop(*args: Any) -> None:
        return None

    return add, mul, tsum, identity, echo, noop


def _workflow_tasks(task: Any, add: Any, identity: Any) -> tuple[Any, ...]:
    @task(name="canvas.fail")
    def fail(message: str, *args: Any) -> None:
        raise ValueError(message)

    @task(name="canvas.on_error")
    def on_error(request: Any, exc: BaseException, traceback: Any, report_id: str) -> None:
        """A three-argument errback: the worker calls it with (request, exc, traceback);
        it reports what it got as the result of a task sent under *report_id*."""
        report = {
            "request_id": request.id,
            "request_task": request.task,
            "exc_type": type(exc).__name__,
            "exc_args": [str(arg) for arg in exc.args],
            "traceback_names_it": isinstance(traceback, str) and "ValueError" in traceback,
        }
        identity.apply_async((report,), task_id=report_id)

    @task(name="canvas.spawn")
    def spawn(n: int) -> int:
        """Send *n* add tasks from inside a task: they become its ``children``."""
        for i in range(n):
            add.delay(i, i)
        return n

    @task(name="canvas.slow_add", acks_late=True)
    def slow_add(x: int, y: int, seconds: float) -> int:
        time.sleep(seconds)
        return x + y

    return fail, on_error, spawn, slow_add


def _tagged_tasks(task: Any, implementation: str) -> tuple[Any, ...]:
    @task(name="canvas.tagged")
    def tagged(x: int, seconds: float = 0.0) -> list[Any]:
        """*x* and which implementation ran it, after *seconds* of work."""
        time.sleep(seconds)
        return [x, implementation]

    @task(name="canvas.tally")
    def tally(parts: list[list[Any]]) -> dict[str, Any]:
        """A chord body over tagged parts: their sum, who ran them, who ran this."""
        return {
            "sum": sum(int(part[0]) for part in parts),
            "parts_ran_on": sorted({str(part[1]) for part in parts}),
            "body_ran_on": implementation,
        }

    return tagged, tally


def _numbers(values: Any) -> list[int]:
    if isinstance(values, (list, tuple)):
        return [n for value in values for n in _numbers(value)]
    return [int(values)]


app = Celery("canvas_tasks")
# a killed worker's unacked tasks come back after this many seconds without a heartbeat
app.conf.worker_dead_after = float(os.environ.get("TEST_WORKER_DEAD_AFTER", "5"))
tasks = define_tasks(app)
