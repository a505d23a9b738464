"""celeriac: a distributed task queue that speaks Celery 5's wire protocol.

Change ``from celery import Celery`` to ``from celeriac import Celery`` and keep your tasks.

Names load on first use, so ``celeriac -P gevent`` can monkey-patch before anything
imports ``socket``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "AsyncResult": "celeriac.result",
    "EagerResult": "celeriac.result",
    "GroupResult": "celeriac.result",
    "Celeriac": "celeriac.app.base",
    "Celery": "celeriac.app.base",
    "shared_task": "celeriac.app.base",
    "Task": "celeriac.task",
    "CeleriacError": "celeriac.errors",
    "MaxRetriesExceededError": "celeriac.errors",
    "NotRegistered": "celeriac.errors",
    "Reject": "celeriac.errors",
    "Retry": "celeriac.errors",
    "SoftTimeLimitExceeded": "celeriac.errors",
    "TaskRevokedError": "celeriac.errors",
    "TimeLimitExceeded": "celeriac.errors",
    "states": "celeriac.states",
    "signature": "celeriac.canvas",
    "chain": "celeriac.canvas",
    "group": "celeriac.canvas",
    "chord": "celeriac.canvas",
    "chunks": "celeriac.canvas",
    "Signature": "celeriac.canvas",
    "maybe_signature": "celeriac.canvas",
    "subtask": "celeriac.canvas",
    "xmap": "celeriac.canvas",
    "xstarmap": "celeriac.canvas",
    "current_app": "celeriac.utils.current",
    "current_task": "celeriac.utils.current",
    "uuid": "celeriac.utils",
    "Exchange": "celeriac.queues",
    "Queue": "celeriac.queues",
}

__all__ = [
    "AsyncResult",
    "Celeriac",
    "CeleriacError",
    "Celery",
    "EagerResult",
    "Exchange",
    "GroupResult",
    "MaxRetriesExceededError",
    "NotRegistered",
    "Queue",
    "Reject",
    "Retry",
    "Signature",
    "SoftTimeLimitExceeded",
    "Task",
    "TaskRevokedError",
    "TimeLimitExceeded",
    "__version__",
    "chain",
    "chord",
    "chunks",
    "current_app",
    "current_task",
    "group",
    "maybe_signature",
    "shared_task",
    "signature",
    "states",
    "subtask",
    "uuid",
    "xmap",
    "xstarmap",
]

if TYPE_CHECKING:
    from . import states
    from .app import Celeriac, Celery, shared_task
    from .canvas import (
        Signature,
        chain,
        chord,
        chunks,
        group,
        maybe_signature,
        signature,
        subtask,
        xmap,
        xstarmap,
    )
    from .errors import (
        CeleriacError,
        MaxRetriesExceededError,
        NotRegistered,
        Reject,
        Retry,
        SoftTimeLimitExceeded,
        TaskRevokedError,
        TimeLimitExceeded,
    )
    from .queues import Exchange, Queue
    from .result import AsyncResult, EagerResult, GroupResult
    from .task import Task
    from .utils import uuid
    from .utils.current import current_app, current_task


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'celeriac' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if name == "states" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
