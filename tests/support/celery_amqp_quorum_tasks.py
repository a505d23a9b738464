"""The quorum-queue test tasks on a real Celery app, over RabbitMQ (interop tests)."""

from __future__ import annotations

import os

from amqp_quorum_defs import configure, define_tasks
from celery import Celery

app = Celery(
    "celery_amqp_quorum_tasks",
    broker=os.environ["CELERIAC_BROKER_URL"],
    backend=os.environ.get("CELERIAC_RESULT_BACKEND"),
)
app.conf.worker_hijack_root_logger = False
configure(app)
tasks = define_tasks(app, "celery")
