"""Tasks for the prefork tests. Importing this module records the importing pid, so a test
can prove children inherit the code instead of importing it again."""

from __future__ import annotations

import os
import time
from typing import Any

from celeriac import Celery, SoftTimeLimitExceeded

_log = os.environ.get("CELERIAC_TEST_IMPORT_LOG")
if _log:
    with open(_log, "a") as handle:
        handle.write(f"{os.getpid()}\n")

app = Celery("prefork_tasks")


@app.task(name="pf.place", bind=True)
def place(self: Any, seconds: float = 0.0) -> dict[str, Any]:
    time.sleep(seconds)
    return dict(self.request.place)


@app.task(name="pf.spin", bind=True)
def spin(self: Any, seconds: float) -> dict[str, Any]:
    """Burn CPU (no sleeping) for about *seconds*, then say where."""
    deadline = time.perf_counter() + seconds
    count = 0
    while time.perf_counter() < deadline:
        count += 1
    return dict(self.request.place)


@app.task(name="pf.soft_catch", soft_time_limit=0.3)
def soft_catch() -> str:
    try:
        time.sleep(10)
    except SoftTimeLimitExceeded:
        return "caught"
    return "not interrupted"


@app.task(name="pf.hard", time_limit=0.5)
def hard() -> None:
    time.sleep(30)


@app.task(name="pf.suicide")
def suicide() -> None:
    os.kill(os.getpid(), 9)


@app.task(name="pf.pid")
def pid() -> int:
    return os.getpid()
