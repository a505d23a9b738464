"""The seed project's tasks that the demo sends, under the seed's own task names.

They live in the package (not only in ``examples/seed_project``) because an installed wheel
has no examples directory. The names are given explicitly so that the seed's routes
(``tasks.basic_tasks.*`` to ``basic``, ...) apply although the module path differs.

The CPU and I/O tasks report ``threading.get_native_id()``: gevent and eventlet patch
``threading.get_ident`` to return a per-greenlet id, and the demo must tell "many greenlets
in one OS thread" from "many threads".
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
import time
import urllib.parse
import urllib.request
from typing import Any

from celeriac.task import Task

from .seed_app import app
from .work import burn


def _cpu_report(iterations: int) -> dict[str, Any]:
    started = time.thread_time()
    checksum = burn(iterations)
    return {
        "iterations": iterations,
        "checksum": checksum,
        "cpu_s": time.thread_time() - started,
        "native_thread_id": threading.get_native_id(),
    }


@app.task(name="tasks.basic_tasks.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="tasks.basic_tasks.multiply")
def multiply(x: int, y: int) -> int:
    return x * y


@app.task(name="tasks.basic_tasks.where_am_i", bind=True)
def where_am_i(self: Task) -> dict[str, Any]:
    """The seed's question, answered by the task: the execution place the worker recorded."""
    return dict(self.request.place)


@app.task(name="tasks.advanced_tasks.complex_task", bind=True)
def complex_task(self: Task, steps: int = 3) -> dict[str, Any]:
    """A bound task that works in steps and says which process did them."""
    total = sum(step * step for step in range(1, steps + 1))
    return {"steps": steps, "sum_of_squares": total, "retries": self.request.retries}


@app.task(name="tasks.realworld_tasks.cpu_bound")
def cpu_bound(iterations: int) -> dict[str, Any]:
    return _cpu_report(iterations)


@app.task(name="tasks.realworld_tasks.cpu_bound_async")
async def cpu_bound_async(iterations: int) -> dict[str, Any]:
    """CPU work in a coroutine: it never awaits, so it holds the event loop until done."""
    return _cpu_report(iterations)


@app.task(name="tasks.realworld_tasks.io_bound")
def io_bound(seconds: float) -> dict[str, Any]:
    """Waits as blocking I/O does; gevent and eventlet patch ``time.sleep`` to yield."""
    time.sleep(seconds)
    return {"slept_s": seconds, "native_thread_id": threading.get_native_id()}


@app.task(name="tasks.realworld_tasks.io_bound_async")
async def io_bound_async(seconds: float) -> dict[str, Any]:
    await asyncio.sleep(seconds)
    return {"slept_s": seconds, "native_thread_id": threading.get_native_id()}


def _check_loopback(url: str) -> None:
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        is_loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        is_loopback = False
    if not is_loopback:
        raise ValueError(
            f"fetch_url only fetches loopback URLs (127.0.0.1, ::1, localhost), got {url!r}; "
            f"the demo starts its own HTTP server on 127.0.0.1"
        )


@app.task(name="tasks.realworld_tasks.fetch_url")
def fetch_url(url: str) -> dict[str, Any]:
    """An HTTP GET against the demo's own loopback server: network I/O with no network."""
    _check_loopback(url)
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read()
    return {"status": response.status, "bytes": len(body)}
