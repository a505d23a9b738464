"""A project with Celery-style ``task_queues`` made of kombu objects; imported by worker
subprocesses as ``queue_tasks`` and by tests, which give the same settings to their clients
(a celeriac client, or a real Celery one)."""

from __future__ import annotations

from typing import Any

from kombu import Exchange, Queue

from celeriac import Celery

MEDIA = Exchange("media", type="direct")
LOGS = Exchange("logs", type="topic")

TASK_QUEUES = (
    Queue("default", Exchange("default"), routing_key="default"),
    Queue("videos", MEDIA, routing_key="media.video"),
    Queue("images", MEDIA, routing_key="media.image"),
    Queue(
        "urgent", Exchange("urgent"), routing_key="urgent", queue_arguments={"x-max-priority": 10}
    ),
    Queue("errors", LOGS, routing_key="*.error"),
)

TASK_ROUTES = {
    "queues.encode": {"exchange": "media", "routing_key": "media.video"},
    "queues.thumbnail": {"queue": "images"},
    "queues.report": {"exchange": "logs", "routing_key": "web.error"},
}


def configure(conf: Any) -> None:
    """The same settings for a celeriac app or a Celery app."""
    conf.task_queues = TASK_QUEUES
    conf.task_default_queue = "default"
    conf.task_default_exchange = "default"
    conf.task_default_routing_key = "default"
    conf.task_routes = TASK_ROUTES


app = Celery("queue_tasks")
configure(app.conf)


def _where(task: Any) -> dict[str, Any]:
    info = task.request.delivery_info or {}
    return {"task": task.name, "routing_key": info.get("routing_key")}


@app.task(name="queues.encode", bind=True)
def encode(self: Any) -> dict[str, Any]:
    return _where(self)


@app.task(name="queues.thumbnail", bind=True)
def thumbnail(self: Any) -> dict[str, Any]:
    return _where(self)


@app.task(name="queues.report", bind=True)
def report(self: Any) -> dict[str, Any]:
    return _where(self)


@app.task(name="queues.plain", bind=True)
def plain(self: Any) -> dict[str, Any]:
    return _where(self)
