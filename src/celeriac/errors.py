"""Every error celeriac raises, under one root.

CeleriacError                   (CeleryError: Celery's name for the root)
├── ConfigurationError          a setting, URL or app reference is wrong
│   ├── ImproperlyConfigured    (Celery's name for the same thing)
│   └── InvalidSchedule         a crontab/schedule/solar field that cannot be a schedule
├── SecurityError               a message signature or key that does not check out
├── SerializationError          a value cannot be encoded or decoded
│   └── ContentDisallowed       a content type that is not accepted (pickle)
├── InvalidMessage              a broker message that is not Celery protocol v2
├── BrokerError                 the broker cannot be reached or refused a command
│                               (OperationalError: kombu's name, as Celery code catches it)
├── BackendError                the result backend cannot be reached
│   ├── BackendGetMetaError     reading a task's state failed
│   └── BackendStoreError       writing a task's state failed
├── InvalidTaskOptions          an apply_async option of the wrong type or range
├── TaskPredicate               raised by a task to steer the worker, not a failure
│   ├── Retry                   raised by Task.retry() to ask for another run
│   ├── Reject                  raised by a task to reject its message
│   └── Ignore                  raised by a task whose state must not be stored (acked)
├── TaskError                   base of errors raised inside or about tasks
│   ├── NotRegistered           a task name this app does not know
│   ├── AlreadyRegistered
│   ├── TimeoutError            AsyncResult.get() waited longer than its timeout
│   ├── QueueNotFound           a route names a queue that is not declared
│   ├── IncompleteStream
│   ├── InvalidTaskError        a task message that cannot be run
│   ├── Terminated              the task was terminated by a revoke
│   ├── MaxRetriesExceededError
│   ├── TaskRevokedError
│   ├── WorkerLostError
│   ├── TimeLimitExceeded       the hard time limit killed the task
│   ├── SoftTimeLimitExceeded   raised inside the task at the soft limit
│   └── ChordError              a chord's body cannot run: a header task failed
└── RemoteTaskError             stand-in for a task exception whose type the
                                client cannot import (carries the type name)

Warnings (not errors, so under UserWarning): CeleriacWarning (CeleryWarning) and Celery's
AlwaysEagerIgnored, DuplicateNodenameWarning, DuplicateTaskNameWarning, FixupWarning,
NotConfigured, SecurityWarning. WorkerShutdown and WorkerTerminate derive from SystemExit, as
in Celery. ``celeriac.exceptions`` re-exports all of these under Celery's names.
"""

from __future__ import annotations

import builtins
import types
from typing import Any, NoReturn


class CeleriacError(Exception):
    """Root of every celeriac exception."""


CeleryError = CeleriacError


class ConfigurationError(CeleriacError):
    pass


class ImproperlyConfigured(ConfigurationError):
    pass


class InvalidSchedule(ConfigurationError, ValueError):
    """A ``crontab``/``schedule``/``solar`` argument that cannot be a schedule (a ValueError,
    as Celery raises)."""


class SecurityError(CeleriacError):
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


OperationalError = BrokerError


class BackendError(CeleriacError):
    pass


class BackendGetMetaError(BackendError):
    def __init__(self, *args: Any, task_id: str = "", **_kwargs: Any) -> None:
        super().__init__(*args)
        self.task_id = task_id


class BackendStoreError(BackendError):
    def __init__(self, *args: Any, state: str = "", task_id: str = "", **_kwargs: Any) -> None:
        super().__init__(*args)
        self.state = state
        self.task_id = task_id


class TaskError(CeleriacError):
    pass


class TaskPredicate(CeleriacError):
    """Raised by a task to tell the worker what to do with its message; not a failure."""


class NotRegistered(TaskError, KeyError):
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


class TimeoutError(TaskError, builtins.TimeoutError):
    pass


class AlreadyRegistered(TaskError):
    pass


class QueueNotFound(TaskError, KeyError):
    """A task routed to a queue that is not declared (``task_create_missing_queues`` off)."""


class IncompleteStream(TaskError):
    pass


class InvalidTaskError(TaskError):
    """A task message that cannot be run as it is (bad fields, bad arguments)."""


class Terminated(TaskError):
    """The task was terminated by ``revoke(terminate=True)``."""


class Retry(TaskPredicate):
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


RetryTaskError = Retry  # Celery's old name


class Reject(TaskPredicate):
    """Raised by a task to reject its message (``requeue=True`` puts it back)."""

    def __init__(self, reason: Any = None, requeue: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.requeue = requeue


class Ignore(TaskPredicate):
    """Raised by a task (``Task.replace`` raises it) so the worker stores no state for it:
    something else (the replacement) writes the result under its id."""


class MaxRetriesExceededError(TaskError):
    def __init__(
        self,
        *args: Any,
        task_args: Any = None,
        task_kwargs: Any = None,
    ) -> None:
        super().__init__(*args)
        self.task_args = list(task_args or [])
        self.task_kwargs = dict(task_kwargs or {})


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


class CeleriacWarning(UserWarning):
    """Base of celeriac's warnings."""


CeleryWarning = CeleriacWarning


class AlwaysEagerIgnored(CeleriacWarning):
    """``send_task`` sends a message even when ``task_always_eager`` is set."""


class DuplicateNodenameWarning(CeleriacWarning):
    pass


class DuplicateTaskNameWarning(CeleriacWarning):
    pass


class FixupWarning(CeleriacWarning):
    pass


class NotConfigured(CeleriacWarning):
    pass


class SecurityWarning(CeleriacWarning):
    pass


class CPendingDeprecationWarning(PendingDeprecationWarning):
    pass


class CDeprecationWarning(DeprecationWarning):
    pass


class WorkerShutdown(SystemExit):
    """Raised to ask the worker for a warm shutdown (a SystemExit, as in Celery)."""


class WorkerTerminate(SystemExit):
    """Raised to ask the worker to stop at once (a SystemExit, as in Celery)."""


SystemTerminate = WorkerTerminate


def reraise(
    tp: type[BaseException] | None, value: BaseException, tb: types.TracebackType | None = None
) -> NoReturn:
    """Raise *value* again with traceback *tb* (Celery's helper; *tp* is not used)."""
    if value.__traceback__ is not tb:
        raise value.with_traceback(tb)
    raise value
