"""Tasks for the remote-control tests; imported by worker subprocesses."""

from __future__ import annotations

import os
import time

from celeriac import Celery

app = Celery("control_tasks")


@app.task(name="ctl.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="ctl.hold")
def hold(path: str, limit_s: float = 30.0) -> int:
    """Run until *path* exists (the test creates it), so the test sees the task running."""
    deadline = time.monotonic() + limit_s
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    return os.getpid()
