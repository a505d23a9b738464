"""Bound tasks on the ``advanced`` queue: retries, and a chain written with plain calls.

The chain does not need canvas: each step sends the next one with ``.delay()`` and returns
its id, so the client can follow the steps (``follow_pipeline``) wherever they ran.
"""

from __future__ import annotations

import os
from typing import Any

from celery_app import app

from celeriac import AsyncResult


@app.task(bind=True)
def complex_task(self: Any, steps: int = 3) -> dict[str, Any]:
    """Work in steps and say which process did them (the seed runs it in child 3)."""
    total = sum(step * step for step in range(1, steps + 1))
    return {"steps": steps, "sum_of_squares": total, "pid": os.getpid()}


@app.task(bind=True, max_retries=3)
def flaky(self: Any, fail_times: int) -> dict[str, Any]:
    """Fail *fail_times* times on purpose, retrying 0.2 s later each time, then succeed."""
    attempt = self.request.retries + 1
    if self.request.retries < fail_times:
        raise self.retry(countdown=0.2, exc=RuntimeError(f"attempt {attempt} failed on purpose"))
    return {"attempts": attempt, "pid": os.getpid()}


@app.task(bind=True)
def pipeline_add(self: Any, x: int, y: int, factor: int) -> dict[str, Any]:
    """Step 1 of 3: add, then hand the sum to step 2."""
    total = x + y
    following = pipeline_multiply.delay(total, factor)
    return {"step": "add", "value": total, "pid": os.getpid(), "next": following.id}


@app.task(bind=True)
def pipeline_multiply(self: Any, value: int, factor: int) -> dict[str, Any]:
    """Step 2 of 3: multiply, then hand the product to step 3."""
    product = value * factor
    following = pipeline_report.delay(product)
    return {"step": "multiply", "value": product, "pid": os.getpid(), "next": following.id}


@app.task
def pipeline_report(value: int) -> dict[str, Any]:
    """Step 3 of 3: the end of the chain."""
    return {"step": "report", "value": value, "pid": os.getpid(), "next": None}


def follow_pipeline(first: AsyncResult, timeout_s: float = 10) -> list[dict[str, Any]]:
    """Wait for each step in turn, by the ids the steps return."""
    steps = []
    result: AsyncResult | None = first
    while result is not None:
        step = result.get(timeout=timeout_s)
        steps.append(step)
        result = app.AsyncResult(step["next"]) if step["next"] else None
    return steps
