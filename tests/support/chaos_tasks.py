"""Tasks for the chaos tests (kill loop, broker outage, live fuzz, dead letters).

Each run records itself in a Redis of the test's choosing (``TEST_RECORD_URL``, else the
broker), so a test can tell which tasks ran, where, when, and how often, even when the
broker is SQLite or a Redis that the test restarts.
"""

from __future__ import annotations

import os
import time

import redis

from celeriac import Celery, Reject

app = Celery("chaos_tasks")
app.conf.task_acks_late = True
app.conf.task_max_redeliveries = int(os.environ.get("TEST_MAX_REDELIVERIES", "5"))
app.conf.broker_transport_options = {
    "visibility_timeout": float(os.environ.get("TEST_VISIBILITY_TIMEOUT", "3600"))
}

_clients: dict[int, redis.Redis] = {}


def recorder() -> redis.Redis:
    """This process's client to the recording Redis (one per pid: never shared over fork)."""
    pid = os.getpid()
    client = _clients.get(pid)
    if client is None:
        url = os.environ.get("TEST_RECORD_URL") or os.environ["CELERIAC_BROKER_URL"]
        client = _clients[pid] = redis.Redis.from_url(url)
    return client


def event(kind: str, label: str) -> str:
    """One line of a run's event list: kind (S = started, D = done), label, pid, time, ppid."""
    return f"{kind} {label} {os.getpid()} {time.time():.6f} {os.getppid()}"


@app.task(name="chaos.record")
def record(run: str, label: str, seconds: float = 0.0) -> str:
    """Work for *seconds*, then record that *label* completed (once per run, counted)."""
    client = recorder()
    client.rpush(f"{run}:events", event("S", label))
    if seconds:
        time.sleep(seconds)
    pipe = client.pipeline(transaction=True)
    pipe.sadd(f"{run}:done", label)
    pipe.hincrby(f"{run}:runs", label, 1)
    pipe.rpush(f"{run}:events", event("D", label))
    pipe.execute()
    return label


@app.task(name="chaos.gate")
def gate(run: str, label: str) -> str:
    """Refuse to run (dead-lettered by Reject) until the test opens the gate of *run*."""
    client = recorder()
    if not client.exists(f"{run}:open"):
        raise Reject(f"gate of {run} closed", requeue=False)
    client.sadd(f"{run}:done", label)
    return label
