"""Tasks that can be asked to stop: ``AbortableTask`` and ``AbortableAsyncResult``.

The client's ``abort()`` stores the state ``ABORTED`` in the result backend, as Celery's
does (so a Celery client or task reads it too); the task looks at ``self.is_aborted()``
between steps and returns early. Nothing interrupts the task: it stops when it checks.

    @app.task(bind=True, base=AbortableTask)
    def crunch(self, items):
        for item in items:
            if self.is_aborted():
                return "stopped"
            ...

    result = crunch.delay(items)
    result.abort()
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .. import result as results
from ..backends.base import build_meta
from ..task import Task

__all__ = ["ABORTED", "AbortableAsyncResult", "AbortableTask"]

ABORTED = "ABORTED"


class AbortableAsyncResult(results.AsyncResult):
    """An AsyncResult that can ask its task to stop."""

    def is_aborted(self) -> bool:
        return self.state == ABORTED

    def abort(self) -> None:
        """Store ABORTED for this task; the task stops the next time it checks."""
        expires: Any = self.app.conf.result_expires
        if hasattr(expires, "total_seconds"):
            expires = expires.total_seconds()
        meta = build_meta(self.id, ABORTED, None)
        self.backend.store(self.id, meta, float(expires) if expires else None)
        self._cache = None


class AbortableTask(Task):
    """A task base (``base=AbortableTask``) whose results can be aborted."""

    def AsyncResult(self, task_id: str) -> AbortableAsyncResult:
        return AbortableAsyncResult(task_id, task_name=self.name, app=self.app)

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> results.AsyncResult:
        sent = super().apply_async(args, kwargs, **options)
        if isinstance(sent, (AbortableAsyncResult, results.EagerResult)):  # eager: already finished
            return sent
        result = self.AsyncResult(sent.id)
        result.parent = sent.parent
        return result

    def is_aborted(self, task_id: str | None = None, **_ignored: Any) -> bool:
        """Whether the running task (or *task_id*) was asked to stop."""
        wanted = task_id or self.request.id
        if not wanted:
            return False
        return self.AsyncResult(wanted).is_aborted()
