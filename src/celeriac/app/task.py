"""``celery.app.task``'s names: ``Task`` (subclass it for ``base=``) and ``Context`` (the
request a running task sees as ``self.request``). Both live in :mod:`celeriac.task`."""

from __future__ import annotations

from ..task import Request as Context
from ..task import Task

__all__ = ["Context", "Task"]
