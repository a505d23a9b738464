"""Tasks for the RabbitMQ tests, defined once for a celeriac app (amqp_tasks.py) and a Celery
app (celery_amqp_tasks.py): the same names on both sides."""

from __future__ import annotations

import functools
import os
import time
from types import SimpleNamespace
from typing import Any


def define_tasks(app: Any, implementation: str) -> SimpleNamespace:
    # Celery shares decorated tasks with every app made later (and 5.7 warns when two
    # callables share a name): keep each to its own app
    task = functools.partial(app.task, shared=False)

    @task(name="amqp.add")
    def add(x: int, y: int) -> int:
        return x + y

    @task(name="amqp.tsum")
    def tsum(values: list[int]) -> int:
        return sum(values)

    @task(name="amqp.fail")
    def fail(message: str) -> None:
        raise ValueError(message)

    @task(name="amqp.retry_once", bind=True)
    def retry_once(self: Any) -> int:
        if self.request.retries == 0:
            raise self.retry(countdown=0.3)
        return int(self.request.retries)

    @task(name="amqp.where")
    def where() -> dict[str, Any]:
        return {"implementation": implementation, "pid": os.getpid()}

    @task(name="amqp.sleep", acks_late=True)
    def sleep(seconds: float) -> int:
        time.sleep(seconds)
        return os.getpid()

    @task(name="amqp.routed")
    def routed() -> str:
        return implementation

    return SimpleNamespace(
        add=add,
        tsum=tsum,
        fail=fail,
        retry_once=retry_once,
        where=where,
        sleep=sleep,
        routed=routed,
    )


ROUTES = {"amqp.routed": {"queue": "amqp-routed"}}


def configure(app: Any) -> None:
    app.conf.task_routes = ROUTES
    app.conf.worker_prefetch_multiplier = int(os.environ.get("TEST_PREFETCH", "1"))
    app.conf.task_default_queue_type = os.environ.get("TEST_QUEUE_TYPE", "classic")
    if type(app).__module__.startswith("celery."):
        # a Celery client's send returns before RabbitMQ has the message unless it waits
        # for the publisher confirm (celeriac's sends always do)
        app.conf.broker_transport_options = {"confirm_publish": True}
