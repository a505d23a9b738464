"""Every error celeriac raises, under one root.

CeleriacError
├── ConfigurationError          a setting, URL or app reference is wrong
│   └── ImproperlyConfigured    (Celery's name for the same thing)
├── SerializationError          a value cannot be encoded or decoded
│   └── ContentDisallowed       a content type that is not accepted (pickle)
├── InvalidMessage              a broker message that is not Celery protocol v2
├── BrokerError                 the broker cannot be reached or refused a command
├── BackendError                the result backend cannot be reached
├── InvalidTaskOptions          an apply_async option of the wrong type or range
├── NotRegistered               a task name this app does not know
├── TimeoutError                AsyncResult.get() waited longer than its timeout
├── TaskError                   base of errors raised inside or about tasks
│   ├── Retry                   raised by Task.retry() to ask for another run
│   ├── Reject                  raised by a task to reject its message
│   ├── MaxRetriesExceededError
│   ├── TaskRevokedError
│   ├── WorkerLostError
│   ├── TimeLimitExceeded       the hard time limit killed the task
│   ├── SoftTimeLimitExceeded   raised inside the task at the soft limit
│   └── ChordError              a chord's body cannot run: a header task failed
└── RemoteTaskError             stand-in for a task exception whose type the
                                client cannot import (carries the type name)
"""

from __future__ import annotations

import builtins
from typing import Any


class CeleriacError(Exception):
    """Root of every celeriac exception."""


class ConfigurationError(CeleriacError):
    pass


class ImproperlyConfigured(ConfigurationError):
    pass


class SerializationError(CeleriacError):
    pass


class ContentDisallowed(SerializationError):
    pass


class InvalidMessage(CeleriacError):
    """A message on a queue that cannot be run; it goes to the dead-letter list."""

    def __init__(self, reason: str, *, task_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.task_id = task_id


class BrokerError(CeleriacError):
    pass


class BackendError(CeleriacError):
    pass


class NotRegistered(CeleriacError, KeyError):
    """A task name the app does not know."""

    def __init__(self, name: str, *, message: str | None = None) -> None:
        super().__init__(name)
        self.task_name = name
        self._message = message or (
            f"task {name!r} is not registered on this app; import its module in the app "
            f"(include=[...]) or check the task name"
        )

    def __str__(self) -> str:
        return self._message


class TimeoutError(CeleriacError, builtins.TimeoutError):
    pass


class TaskError(CeleriacError):
    pass


class Retry(TaskError):
    """Raised by ``Task.retry()``: the worker stores RETRY and schedules another run."""

    def __init__(
        self,
        message: str | None = None,
        exc: BaseException | None = None,
        when: float | None = None,
    ) -> None:
        self.exc = exc
        self.when = when
        super().__init__(message or self._describe())

    def _describe(self) -> str:
        when = f"in {self.when}s" if self.when is not None else "later"
        return f"Retry {when}: {self.exc!r}" if self.exc is not None else f"Retry {when}"


class Reject(TaskError):
    """Raised by a task to reject its message (``requeue=True`` puts it back)."""

    def __init__(self, reason: Any = None, requeue: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.requeue = requeue


class MaxRetriesExceededError(TaskError):
    pass


class TaskRevokedError(TaskError):
    pass


class WorkerLostError(TaskError):
    pass


class TimeLimitExceeded(TaskError):
    pass


class SoftTimeLimitExceeded(TaskError):
    pass


class ChordError(TaskError):
    """The chord body was not run: a header task failed (the message names it), or the
    body could not be sent. Stored as ``celery.exceptions.ChordError``."""


class RemoteTaskError(CeleriacError):
    """A task failed with an exception type that cannot be imported here.

    ``exc_type`` and ``exc_module`` name the original type; ``args`` hold its arguments.
    """

    exc_type: str = "Exception"
    exc_module: str = "builtins"


def remote_error_class(exc_type: str, exc_module: str) -> type[RemoteTaskError]:
    """A subclass named like the remote type, so ``repr()`` and ``except`` read naturally."""
    return type(exc_type, (RemoteTaskError,), {"exc_type": exc_type, "exc_module": exc_module})


class InvalidTaskOptions(CeleriacError, ValueError):
    """An ``apply_async`` / ``send_task`` option has the wrong type or range."""
