"""Tasks for the flow-control tests; imported by worker subprocesses (broker from
CELERIAC_BROKER_URL). Each run records when it started and ended, and where, in a Redis list
(``runs:<name>``) or, on SQLite, in a table of a file next to the broker's."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from celeriac import Celery

app = Celery("flow_tasks")
_record_client: Any = None


def _record(name: str, started: float, **extra: Any) -> None:
    global _record_client
    url = os.environ["CELERIAC_BROKER_URL"]
    line = f"{started:.6f} {time.time():.6f} {os.getpid()} {extra.get('key', '-')}"
    if url.startswith("redis"):
        import redis

        if _record_client is None:
            _record_client = redis.Redis.from_url(url)
        _record_client.rpush(f"runs:{name}", line)
        return
    import sqlite3

    path = url.split("sqlite:///", 1)[1] + ".runs"
    with sqlite3.connect(path, timeout=30) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS runs (name TEXT, line TEXT)")
        conn.execute("INSERT INTO runs VALUES (?, ?)", (name, line))


@app.task(name="flow.global_rate", rate_limit="5/s", rate_limit_scope="global")
def global_rate(i: int) -> int:
    _record("global_rate", time.time())
    return i


@app.task(name="flow.worker_rate", rate_limit="5/s")
def worker_rate(i: int) -> str:
    _record("worker_rate", time.time(), key=socket.gethostname() + str(os.getppid()))
    return str(os.getppid())


@app.task(
    name="flow.tenant", rate_limit="2/s", rate_limit_scope="global", rate_limit_key="{tenant}"
)
def tenant(i: int, tenant: str) -> int:
    _record("tenant", time.time(), key=tenant)
    return i


@app.task(name="flow.capped", max_concurrency=2)
def capped(i: int, sleep_s: float) -> int:
    started = time.time()
    time.sleep(sleep_s)
    _record("capped", started)
    return i


@app.task(name="flow.hold_slot", max_concurrency=1)
def hold_slot(sleep_s: float) -> float:
    started = time.time()
    _record("hold_slot_started", started)
    time.sleep(sleep_s)
    _record("hold_slot", started)
    return sleep_s


@app.task(name="flow.unique_job", unique_for=60, unique_key="{key}")
def unique_job(key: str, sleep_s: float = 2.0) -> str:
    started = time.time()
    time.sleep(sleep_s)
    _record("unique_job", started, key=key)
    return key


def _boom(*args: Any, **kwargs: Any) -> str:
    raise LookupError("no tenant in this call")


@app.task(name="flow.bad_key", rate_limit="100/s", rate_limit_key=_boom)
def bad_key(i: int) -> int:
    return i


@app.task(name="flow.unlimited")
def unlimited(i: int) -> int:
    return i


@app.task(name="flow.parked_limit", rate_limit="1/m", rate_limit_scope="global")
def parked_limit(i: int) -> int:
    return i
