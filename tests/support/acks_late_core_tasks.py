"""core_tasks with task_acks_late on: a message stays unacked while its task runs, so a
worker killed mid-task leaves it for the next worker to restore."""

from __future__ import annotations

from core_tasks import app

app.conf.task_acks_late = True

__all__ = ["app"]
