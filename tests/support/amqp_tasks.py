"""The RabbitMQ test tasks on a celeriac app; worker subprocesses import this module (broker
and backend from CELERIAC_BROKER_URL and CELERIAC_RESULT_BACKEND)."""

from __future__ import annotations

import os

from amqp_task_defs import configure, define_tasks

from celeriac import Celery

app = Celery(
    "amqp_tasks",
    broker=os.environ.get("CELERIAC_BROKER_URL"),
    backend=os.environ.get("CELERIAC_RESULT_BACKEND"),
)
configure(app)
tasks = define_tasks(app, "celeriac")
