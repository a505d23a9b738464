"""An app whose signal receivers record where they ran, for the signal tests' worker processes.

Every receiver appends one JSON line to the file named by ``SIGNAL_LOG``: the signal, its
sender (as text), pid, parent pid, OS thread, greenlet and asyncio task. One ``write()`` per
line on an ``O_APPEND`` descriptor, so lines from prefork children never interleave.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from typing import Any

from celeriac import Celery, signals
from celeriac.utils.log import get_task_logger

app = Celery("signal_tasks")
app.conf.task_publish_retry_policy = {"max_retries": 1}
logger = get_task_logger(__name__)

RAISING = os.environ.get("SIGNAL_RAISING", "")  # signals whose receiver also raises


def _greenlet() -> int | None:
    module = sys.modules.get("greenlet")
    if module is None:
        return None
    current = module.getcurrent()
    return None if current.parent is None else id(current)


def _asyncio_task() -> str | None:
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return None
    return task.get_name() if task is not None else None


def _sender_text(sender: Any) -> str:
    name = getattr(sender, "name", None)
    return str(name) if isinstance(name, str) else str(sender)


def _record(signal: Any = None, sender: Any = None, **kwargs: Any) -> None:
    task_id = kwargs.get("task_id")
    request = kwargs.get("request")
    if task_id is None and request is not None:
        task_id = getattr(request, "id", None)
    if task_id is None and signal is signals.task_success:  # Celery: sender.request is current
        task_id = sender.request.id
    if task_id is None and "headers" in kwargs:  # the publish signals
        task_id = kwargs["headers"].get("id")
    line = {
        "signal": signal.name,
        "sender": _sender_text(sender),
        "task_id": task_id,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "thread": threading.get_ident(),
        "thread_name": threading.current_thread().name,
        "greenlet": _greenlet(),
        "asyncio_task": _asyncio_task(),
        "state": kwargs.get("state"),
        "retval": repr(kwargs.get("retval")) if "retval" in kwargs else None,
        "result": repr(kwargs.get("result")) if "result" in kwargs else None,
        "exception": repr(kwargs.get("exception")) if "exception" in kwargs else None,
        "terminated": kwargs.get("terminated"),
        "signum": kwargs.get("signum"),
        "expired": kwargs.get("expired"),
    }
    path = os.environ.get("SIGNAL_LOG")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, (json.dumps(line) + "\n").encode())
        finally:
            os.close(fd)
    if signal.name in RAISING.split(","):
        raise RuntimeError(f"receiver of {signal.name} raised on purpose")


for _signal in (
    signals.celeryd_init,
    signals.celeryd_after_setup,
    signals.worker_init,
    signals.worker_ready,
    signals.worker_process_init,
    signals.worker_process_shutdown,
    signals.worker_shutting_down,
    signals.worker_shutdown,
    signals.heartbeat_sent,
    signals.import_modules,
    signals.task_received,
    signals.task_prerun,
    signals.task_postrun,
    signals.task_success,
    signals.task_failure,
    signals.task_retry,
    signals.task_revoked,
    signals.task_unknown,
    signals.task_rejected,
    signals.before_task_publish,
    signals.after_task_publish,
    signals.after_setup_logger,
    signals.after_setup_task_logger,
):
    _signal.connect(_record, weak=False)


@app.task(name="sig.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="sig.aadd")
async def aadd(x: int, y: int) -> int:
    await asyncio.sleep(0)
    return x + y


@app.task(name="sig.boom")
def boom() -> None:
    raise ValueError("boom on purpose")


@app.task(name="sig.flaky", bind=True, max_retries=1, default_retry_delay=0)
def flaky(self: Any) -> str:
    if self.request.retries == 0:
        raise self.retry(exc=KeyError("first try"), countdown=0)
    return "second try"


@app.task(name="sig.wait")
def wait(seconds: float) -> float:
    time.sleep(seconds)  # revoked with terminate=True before it ends
    return seconds


@app.task(name="sig.chatty")
def chatty(text: str) -> str:
    logger.warning("task says %s", text)
    print(f"printed {text}")
    return text


@app.task(name="sig.long_line")
def long_line(tag: str, size: int, count: int) -> int:
    for number in range(count):
        logger.warning("%s-%04d %s end", tag, number, "x" * size)
    return count
