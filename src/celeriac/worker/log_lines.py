"""Celery's per-task log lines, as a view of the lifecycle.

At INFO: ``Task add[id] received``, ``Task add[id] succeeded in 0.0012s: 5``,
``Task add[id] retry: Retry in 5s: ...``, ``Discarding revoked task: add[id]``; at ERROR,
with the traceback: ``Task add[id] raised unexpected: ValueError('x')``. Return values are
shortened like Celery's (``Task.resultrepr_maxsize``, 1024 characters by default).
"""

from __future__ import annotations

import logging
import reprlib
from typing import TYPE_CHECKING, Any

from .. import lifecycle

if TYPE_CHECKING:
    from .execute import ExecContext, Job, Outcome

logger = logging.getLogger(__name__)

RESULT_REPR_MAXSIZE = 1024

_repr = reprlib.Repr()
_repr.maxstring = RESULT_REPR_MAXSIZE
_repr.maxother = RESULT_REPR_MAXSIZE
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxdict = 100
_repr.maxlevel = 8


def short_repr(value: Any, maxsize: int = RESULT_REPR_MAXSIZE) -> str:
    """A repr that stays short for big values: nested containers are elided, then clipped."""
    try:
        text = _repr.repr(value)
    except Exception as exc:  # a __repr__ that raises must not lose the log line
        text = f"<unrepresentable {type(value).__name__}: {exc!r}>"
    if len(text) > maxsize:
        text = text[: max(0, maxsize - 3)] + "..."
    return text


def _name(job: Job) -> str:
    return str(job.message.headers.get("shadow") or job.message.task)


def received(ctx: ExecContext, job: Job) -> None:
    logger.info("Task %s[%s] received", _name(job), job.message.id)


def succeeded(ctx: ExecContext, job: Job, outcome: Outcome) -> None:
    maxsize = getattr(job.task, "resultrepr_maxsize", RESULT_REPR_MAXSIZE)
    logger.info(
        "Task %s[%s] succeeded in %ss: %s",
        _name(job),
        job.message.id,
        outcome.runtime_s,
        short_repr(outcome.value, maxsize),
    )


def failed(ctx: ExecContext, job: Job, outcome: Outcome) -> None:
    exc = outcome.exc
    assert exc is not None
    throws = getattr(job.task, "throws", None) or ()
    if throws and isinstance(exc, throws):  # an error the task declares: no traceback
        logger.info("Task %s[%s] raised expected: %s", _name(job), job.message.id, short_repr(exc))
        return
    logger.error(
        "Task %s[%s] raised unexpected: %s",
        _name(job),
        job.message.id,
        short_repr(exc),
        exc_info=(type(exc), exc, exc.__traceback__),
    )


def retried(ctx: ExecContext, job: Job, outcome: Outcome) -> None:
    logger.info("Task %s[%s] retry: %s", _name(job), job.message.id, outcome.exc)


def revoked(
    ctx: ExecContext, job: Job, terminated: bool, signum: int | None, expired: bool
) -> None:
    if terminated:
        return  # the pool that terminated it says so
    logger.info("Discarding revoked task: %s[%s]", _name(job), job.message.id)


def install() -> None:
    """Subscribe the lines this logger would show (checked once, as Celery does)."""
    lifecycle.task_failed.subscribe(failed)
    lifecycle.subscribe_all(_INFO_LINES, logger.isEnabledFor(logging.INFO))


_INFO_LINES: list[tuple[lifecycle.Point, Any]] = [
    (lifecycle.task_received, received),
    (lifecycle.task_succeeded, succeeded),
    (lifecycle.task_retried, retried),
    (lifecycle.task_revoked, revoked),
]
