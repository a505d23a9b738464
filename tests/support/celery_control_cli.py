"""A Celery app for Celery's own CLI: ``celery inspect NAME`` and ``celery control NAME``
check the name against the commands registered in the CLI's process before sending, so the
names of semantics_tasks' custom commands are registered here too (the worker that answers
is celeriac's)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.worker.control import control_command, inspect_command

_url = os.environ.get("CELERIAC_BROKER_URL", "redis://127.0.0.1:6379/0")
app = Celery(
    "celery_control_cli", broker=_url, backend=os.environ.get("CELERIAC_RESULT_BACKEND", _url)
)


@inspect_command(name="sem_where")
def sem_where(state: Any) -> dict[str, Any]:
    raise AssertionError("answered by the celeriac worker")


@control_command(args=[("n", int)], signature="<n>")
def sem_bump(state: Any, n: int = 1) -> dict[str, Any]:
    raise AssertionError("answered by the celeriac worker")
