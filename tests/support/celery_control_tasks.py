"""The remote-control test tasks defined with the real Celery, for a Celery worker that
``celeriac inspect``/``control`` drive."""

from __future__ import annotations

import os
import time

from celery import Celery

_url = os.environ.get("CELERIAC_BROKER_URL", "redis://127.0.0.1:6379/0")
app = Celery(
    "celery_control_tasks", broker=_url, backend=os.environ.get("CELERIAC_RESULT_BACKEND", _url)
)
app.conf.worker_hijack_root_logger = False


@app.task(name="ctl.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="ctl.hold")
def hold(path: str, limit_s: float = 30.0) -> int:
    deadline = time.monotonic() + limit_s
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    return os.getpid()
