"""Unique tasks on the client: ``unique_for`` (and ``unique_key``) make a second send with
the same key, while the first is queued, parked or running, return the first's result
instead of a new message. The lock lives in the broker; the worker frees it when the task
ends, and a running task's lock lapses with its worker's heartbeat."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .gate import unique_lock
from .runtime import flow_of

if TYPE_CHECKING:
    from ..app import Celeriac
    from ..task import Task


def claim(
    app: Celeriac, task: Task, args: Sequence[Any], kwargs: Mapping[str, Any], task_id: str
) -> str | None:
    """Take the task's unique lock for *task_id*; the id of the task holding it otherwise
    (None too when the task is not unique). A failing key raises here, at the caller."""
    if not getattr(task, "unique_for", None):
        return None
    flow = flow_of(app).spec(task, None)
    if flow is None or not flow.unique_for_s:
        return None
    lock = unique_lock(flow, args, kwargs)
    return flow_of(app).store.claim_unique(lock, task_id, flow.unique_for_s)
