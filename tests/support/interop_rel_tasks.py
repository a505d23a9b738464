"""Tasks for the reliability interop tests, defined with celeriac (bodies in
rel_task_bodies.py; celery_rel_tasks.py registers the same names with the real Celery)."""

from __future__ import annotations

import os

from rel_task_bodies import define_tasks  # workers load tests/support modules top-level

from celeriac import Celery

app = Celery("interop_rel_tasks")
app.conf.task_acks_late = True
app.conf.broker_transport_options = {
    "visibility_timeout": float(os.environ.get("TEST_VISIBILITY_TIMEOUT", "3600"))
}

record, pingpong = define_tasks(app, "celeriac", "to_celery")
