"""The tasks of interop_rel_tasks.py, registered on the real Celery (reliability interop)."""

from __future__ import annotations

import os

from celery import Celery
from rel_task_bodies import define_tasks  # workers load tests/support modules top-level

_url = os.environ["CELERIAC_BROKER_URL"]
app = Celery("celery_rel_tasks", broker=_url, backend=os.environ.get("CELERIAC_RESULT_BACKEND"))
app.conf.worker_hijack_root_logger = False
app.conf.task_acks_late = True
app.conf.broker_transport_options = {
    "visibility_timeout": float(os.environ.get("TEST_VISIBILITY_TIMEOUT", "3600")),
    # sweep for abandoned messages every second, not every 100 s
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}

record, pingpong = define_tasks(app, "celery", "to_celeriac")
