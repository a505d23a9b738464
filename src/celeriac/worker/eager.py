"""``task.apply()``: run a task in this process, as a worker would, with no broker."""

from __future__ import annotations

import asyncio
import traceback
from typing import TYPE_CHECKING, Any

from .. import protocol, states
from ..backends.base import build_meta, encode_exception
from ..errors import Retry
from ..task import Request, pop_request, push_request
from .execute import run_coroutine

if TYPE_CHECKING:
    from ..result import EagerResult
    from ..task import Task


def run_eagerly(
    task: Task,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    task_id: str | None = None,
    retries: int = 0,
    throw: bool | None = None,
    **_options: Any,
) -> EagerResult:
    from ..result import EagerResult

    task_id = task_id or protocol.new_id()
    propagate = task.app.conf.task_eager_propagates if throw is None else throw
    while True:
        request = Request(
            id=task_id,
            task=task.name,
            args=list(args),
            kwargs=kwargs,
            retries=retries,
            is_eager=True,
            called_directly=False,
            root_id=task_id,
        )
        token = push_request(request)
        try:
            value = task(*args, **kwargs)
            if asyncio.iscoroutine(value):
                value = run_coroutine(value)
            meta = build_meta(task_id, states.SUCCESS, value)
            return EagerResult(task_id, meta, app=task.app)
        except Retry as retry:  # eager retries run again at once, as Celery does
            retries += 1
            args = tuple(getattr(retry, "args_override", args))
            kwargs = dict(getattr(retry, "kwargs_override", kwargs))
        except Exception as exc:
            if propagate:
                raise
            meta = build_meta(
                task_id, states.FAILURE, encode_exception(exc), traceback=traceback.format_exc()
            )
            return EagerResult(task_id, meta, app=task.app)
        finally:
            pop_request(token)
