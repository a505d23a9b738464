"""Tasks for the Redis Sentinel tests: the broker and result backend are ``sentinel://``
URLs (from the environment), with the master's name in the transport options as Celery
spells them. Each ``sentinel.record`` run writes itself to a plain Redis the test names
(``TEST_RECORD_URL``), which the failover does not touch."""

from __future__ import annotations

import os
import time

import redis

from celeriac import Celery

MASTER_NAME = os.environ.get("TEST_SENTINEL_MASTER", "mymaster")

app = Celery("sentinel_tasks")
app.conf.task_acks_late = True
app.conf.broker_transport_options = {"master_name": MASTER_NAME}
app.conf.result_backend_transport_options = {"master_name": MASTER_NAME}
app.conf.task_max_redeliveries = 1000  # a failover may redeliver; never dead-letter here

_clients: dict[int, redis.Redis] = {}


def recorder() -> redis.Redis:
    """This process's client to the recording Redis (one per pid: never shared over fork)."""
    pid = os.getpid()
    client = _clients.get(pid)
    if client is None:
        client = _clients[pid] = redis.Redis.from_url(os.environ["TEST_RECORD_URL"])
    return client


@app.task(name="sentinel.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="sentinel.pid")
def pid() -> int:
    return os.getpid()


@app.task(name="sentinel.record")
def record(run: str, label: str, seconds: float = 0.0) -> str:
    """Work for *seconds*, then count a completed run of *label*."""
    client = recorder()
    client.rpush(f"{run}:started", f"{label} {time.time():.6f}")
    if seconds:
        time.sleep(seconds)
    pipe = client.pipeline(transaction=True)
    pipe.sadd(f"{run}:done", label)
    pipe.hincrby(f"{run}:runs", label, 1)
    pipe.execute()
    return label
