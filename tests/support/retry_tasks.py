"""Tasks for the retry tests: every run records its ``retries`` header, the time it started and
its pid in the broker's Redis (``attempts:<key>``, one ``"<retries> <time> <pid>"`` line a run),
so a test sees each attempt, how far apart they were and which worker ran them."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import redis

from celeriac import Celery, Task

app = Celery("retry_tasks")
app.conf.task_acks_late = True
app.conf.task_max_redeliveries = int(os.environ.get("TEST_MAX_REDELIVERIES", "5"))

_clients: dict[int, redis.Redis] = {}


def _redis() -> redis.Redis:
    client = _clients.get(os.getpid())
    if client is None:
        client = _clients[os.getpid()] = redis.Redis.from_url(os.environ["CELERIAC_BROKER_URL"])
    return client


def attempt(task: Task, key: str) -> int:
    """Record this run of *key*; returns its ``retries`` header."""
    retries = int(task.request.retries)
    _redis().rpush(f"attempts:{key}", f"{retries} {time.time():.6f} {os.getpid()}")
    return retries


class Flaky(Exception):
    """What the autoretry tasks raise."""


@app.task(bind=True, name="retry.countdown")
def with_countdown(self: Task, key: str, times: int, countdown: float) -> int:
    """Retry *times* times, *countdown* seconds apart, then return the retries header."""
    retries = attempt(self, key)
    if retries < times:
        raise self.retry(exc=Flaky(f"attempt {retries}"), countdown=countdown)
    return retries


@app.task(bind=True, name="retry.eta")
def with_eta(self: Task, key: str, seconds: float) -> int:
    """Retry once at an explicit eta *seconds* from now."""
    retries = attempt(self, key)
    if retries == 0:
        raise self.retry(eta=datetime.now(timezone.utc) + timedelta(seconds=seconds))
    return retries


@app.task(bind=True, name="retry.default_delay", default_retry_delay=0.4)
def with_default_delay(self: Task, key: str) -> int:
    """Retry once with neither countdown nor eta: default_retry_delay applies."""
    retries = attempt(self, key)
    if retries == 0:
        raise self.retry()
    return retries


@app.task(bind=True, name="retry.forever", max_retries=None)
def forever(self: Task, key: str, max_retries: int, with_exc: bool) -> None:
    """Retry with a per-call max_retries until it is exceeded."""
    attempt(self, key)
    exc = Flaky("gave up") if with_exc else None
    raise self.retry(exc=exc, countdown=0.05, max_retries=max_retries)


@app.task(
    bind=True,
    name="retry.auto_backoff",
    autoretry_for=(Flaky,),
    retry_backoff=0.2,
    retry_backoff_max=0.5,
    retry_jitter=False,
    max_retries=3,
)
def auto_backoff(self: Task, key: str) -> None:
    """Always fails: retried at 0.2, 0.4, 0.5 (capped) seconds, then FAILURE."""
    attempt(self, key)
    raise Flaky("always")


@app.task(
    bind=True,
    name="retry.auto_jitter",
    autoretry_for=(Flaky,),
    retry_backoff=0.4,
    retry_jitter=True,
    max_retries=2,
)
def auto_jitter(self: Task, key: str) -> None:
    """Always fails; each delay is random in [0, 0.4 * 2**retries]."""
    attempt(self, key)
    raise Flaky("always")


@app.task(
    bind=True,
    name="retry.auto_kwargs",
    autoretry_for=(KeyError,),
    retry_kwargs={"max_retries": 1, "countdown": 0.1},
)
def auto_kwargs(self: Task, key: str, succeed_on: int) -> int:
    """Raises KeyError until the *succeed_on*-th retry."""
    retries = attempt(self, key)
    if retries < succeed_on:
        raise KeyError(key)
    return retries


@app.task(bind=True, name="retry.record")
def record(self: Task, key: str, seconds: float = 0.0) -> dict[str, Any]:
    """Run once for *key* after *seconds* of work; returns what its request said."""
    attempt(self, key)
    time.sleep(seconds)
    return {"retries": self.request.retries, "eta": self.request.eta}


@app.task(bind=True, name="retry.suicide")
def suicide(self: Task, key: str) -> None:
    """Kill the whole worker process running it (solo pool): a poison message."""
    attempt(self, key)
    os.kill(os.getpid(), 9)
