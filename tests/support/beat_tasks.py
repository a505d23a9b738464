"""An app for beat tests, imported by beat and worker subprocesses.

The broker comes from CELERIAC_BROKER_URL. BEAT_EVERY_S sets a "tick" entry sending
``beat.record`` that often (none when unset); BEAT_TASK / BEAT_ARGS send another task
instead (for a Celery worker). ``beat.record`` appends its task id to BEAT_RUNS_FILE, one
line per run, so a duplicate run shows as a repeated id.
"""

from __future__ import annotations

import json
import os

from celeriac import Celery
from celeriac.signals import beat_init

app = Celery("beat_tasks")
app.conf.beat_max_loop_interval = 0.5
if os.environ.get("BEAT_CATCH_UP"):
    app.conf.beat_catch_up = os.environ["BEAT_CATCH_UP"]
if os.environ.get("BEAT_CLAIM_TIMEOUT"):
    app.conf.beat_claim_timeout = float(os.environ["BEAT_CLAIM_TIMEOUT"])
if os.environ.get("BEAT_EVERY_S"):
    app.conf.beat_schedule = {
        "tick": {
            "task": os.environ.get("BEAT_TASK", "beat.record"),
            "schedule": float(os.environ["BEAT_EVERY_S"]),
            "args": json.loads(os.environ.get("BEAT_ARGS", "[]")),
        }
    }


@beat_init.connect
def announce(sender: object = None, **kwargs: object) -> None:
    print(f"beat_init received from {type(sender).__name__}", flush=True)


@app.task(name="beat.record", bind=True)
def record(self: object) -> str:
    task_id = str(self.request.id)  # type: ignore[attr-defined]
    path = os.environ["BEAT_RUNS_FILE"]
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{task_id}\n".encode())
    finally:
        os.close(fd)
    return task_id
