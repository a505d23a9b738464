"""Tasks for the RabbitMQ quorum-queue tests, defined once for a celeriac app
(amqp_quorum_tasks.py) and a Celery app (celery_amqp_quorum_tasks.py).

Both apps make the default queue (``TEST_QUEUE``) a quorum queue on an exchange of the
same name, of type ``TEST_EXCHANGE_TYPE`` (topic unless told: native delayed delivery needs
topic or fanout), and cap redeliveries with ``TEST_MAX_REDELIVERIES``. Runs are recorded in
Redis (the result backend's server), so a test sees a task that killed its worker."""

from __future__ import annotations

import functools
import os
import signal
import time
from types import SimpleNamespace
from typing import Any

import redis


def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["CELERIAC_RESULT_BACKEND"])


def configure(app: Any) -> None:
    # a queue and exchange of their own: the other AMQP tests' "celery" exchange is direct
    name = os.environ.get("TEST_QUEUE", "quorum-cap")
    app.conf.task_default_queue = app.conf.task_default_exchange = name
    app.conf.task_default_routing_key = name
    app.conf.task_default_queue_type = app.conf.task_create_missing_queue_type = "quorum"
    app.conf.task_default_exchange_type = os.environ.get("TEST_EXCHANGE_TYPE", "topic")
    app.conf.worker_prefetch_multiplier = 1
    if type(app).__module__.startswith("celery."):
        app.conf.broker_transport_options = {"confirm_publish": True}
    else:
        app.conf.task_max_redeliveries = int(os.environ.get("TEST_MAX_REDELIVERIES", "5"))


def define_tasks(app: Any, implementation: str) -> SimpleNamespace:
    task = functools.partial(app.task, shared=False)

    @task(name="quorum.ran_at")
    def ran_at() -> dict[str, Any]:
        """When it ran, and where."""
        return {"time": time.time(), "implementation": implementation}

    @task(name="quorum.suicide", acks_late=True)
    def suicide(key: str) -> None:
        """Record the run, then kill the process running it (a poison message)."""
        _redis().rpush(f"attempts:{key}", os.getpid())
        os.kill(os.getpid(), signal.SIGKILL)

    return SimpleNamespace(ran_at=ran_at, suicide=suicide)
