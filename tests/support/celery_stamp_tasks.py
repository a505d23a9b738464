"""The tasks of stamp_tasks.py on a real Celery app (for the interop tests)."""

from __future__ import annotations

import os

from celery import Celery
from stamp_tasks import define_tasks

_url = os.environ.get("CELERIAC_BROKER_URL", "redis://127.0.0.1:6379/0")
app = Celery(
    "celery_stamp_tasks",
    broker=_url,
    backend=os.environ.get("CELERIAC_RESULT_BACKEND", _url),
)
app.conf.worker_hijack_root_logger = False
tasks = define_tasks(app)
