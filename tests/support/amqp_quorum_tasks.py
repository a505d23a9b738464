"""The quorum-queue test tasks on a celeriac app (worker subprocesses import this module)."""

from __future__ import annotations

import os

from amqp_quorum_defs import configure, define_tasks

from celeriac import Celery

app = Celery(
    "amqp_quorum_tasks",
    broker=os.environ.get("CELERIAC_BROKER_URL"),
    backend=os.environ.get("CELERIAC_RESULT_BACKEND"),
)
configure(app)
tasks = define_tasks(app, "celeriac")
