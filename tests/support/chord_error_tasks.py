"""Tasks for the chord error-path tests, defined by one function on any app with Celery's
API: the celeriac worker imports this module, the Celery worker celery_chord_error_tasks.

``record(key, label)`` is the errback: it appends *label* to the Redis list *key* on the
result backend's Redis, so a test counts how many times each errback ran."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import redis

from celeriac import Celery


@dataclass(frozen=True)
class ChordErrorTasks:
    add: Any
    identity: Any
    tsum: Any
    fail: Any
    record: Any


def define_tasks(app: Any) -> ChordErrorTasks:
    implementation = type(app).__module__.split(".")[0]
    task = functools.partial(app.task, shared=False) if implementation == "celery" else app.task

    @task(name="cherr.add")
    def add(x: int, y: int) -> int:
        return x + y

    @task(name="cherr.identity")
    def identity(value: Any) -> Any:
        return value

    @task(name="cherr.tsum")
    def tsum(values: list[Any]) -> int:
        return sum(_numbers(values))

    @task(name="cherr.fail")
    def fail(message: str, *args: Any) -> None:
        raise ValueError(message)

    @task(name="cherr.record")
    def record(key: str, label: str) -> None:
        """An immutable errback: called in the worker or sent, it appends *label*."""
        url = os.environ.get("CELERIAC_RESULT_BACKEND") or os.environ["CELERIAC_BROKER_URL"]
        client = redis.Redis.from_url(url)
        try:
            client.rpush(key, label)
        finally:
            client.close()

    return ChordErrorTasks(add, identity, tsum, fail, record)


def _numbers(values: Any) -> list[int]:
    if isinstance(values, (list, tuple)):
        return [n for value in values for n in _numbers(value)]
    return [int(values)]


app = Celery("chord_error_tasks")
tasks = define_tasks(app)
