"""Tasks for the delivery tests: late acks, a counter per run, and a task that kills its
own process. Settings that tests vary come from the environment."""

from __future__ import annotations

import os
import time

import redis

from celeriac import Celery

app = Celery("reliable_tasks")
app.conf.task_acks_late = True
app.conf.broker_transport_options = {
    "visibility_timeout": float(os.environ.get("TEST_VISIBILITY_TIMEOUT", "3600"))
}
app.conf.task_max_redeliveries = int(os.environ.get("TEST_MAX_REDELIVERIES", "5"))


def _counter() -> redis.Redis:
    return redis.Redis.from_url(os.environ["CELERIAC_BROKER_URL"])


@app.task(name="rel.count")
def count(key: str, seconds: float = 0.0) -> int:
    """Record one run of *key* (a Redis counter), after working for *seconds*."""
    _counter().rpush(f"started:{key}", os.getpid())
    time.sleep(seconds)
    return int(_counter().incr(f"runs:{key}"))


@app.task(name="rel.suicide")
def suicide(key: str) -> None:
    _counter().incr(f"runs:{key}")
    os.kill(os.getpid(), 9)


@app.task(name="rel.wait", acks_late=False)
def wait(key: str, seconds: float) -> str:
    _counter().rpush(f"started:{key}", os.getpid())
    time.sleep(seconds)
    return "finished"
