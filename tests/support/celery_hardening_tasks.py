"""Celery tasks that fail with Celery's own exceptions or a project's (safe-decode interop)."""

from __future__ import annotations

import os

import celery.exceptions
from celery import Celery

_url = os.environ.get("CELERIAC_BROKER_URL", "redis://127.0.0.1:6379/0")
app = Celery(
    "celery_hardening_tasks",
    broker=_url,
    backend=os.environ.get("CELERIAC_RESULT_BACKEND", _url),
)
app.conf.worker_hijack_root_logger = False


@app.task(name="hard.raise_celery")
def raise_celery(name: str, message: str) -> None:
    raise getattr(celery.exceptions, name)(message)


@app.task(name="hard.raise_project")
def raise_project(message: str) -> None:
    from hardening_errors import ProjectError

    raise ProjectError(message)
