"""The RabbitMQ test tasks on a celeriac app that records STARTED (``task_track_started``):
with the rpc:// backend every task then sends its client two states, STARTED and its end."""

from __future__ import annotations

import os

from amqp_task_defs import configure, define_tasks

from celeriac import Celery

app = Celery(
    "rpc_tasks",
    broker=os.environ.get("CELERIAC_BROKER_URL"),
    backend=os.environ.get("CELERIAC_RESULT_BACKEND"),
)
configure(app)
app.conf.task_track_started = True
tasks = define_tasks(app, "celeriac")
