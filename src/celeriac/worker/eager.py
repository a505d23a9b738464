"""``task.apply()``: run a task in this process, as a worker would, with no broker.

Celery's rules, checked against the celery package:

- ``throw`` (default ``task_eager_propagates``) re-raises the task's exception, and also the
  ``Retry`` of a task that asks to retry; without it the EagerResult holds the failure.
- A retry runs the task again at once, with the same id and ``request.retries`` one
  higher, until it succeeds or ``max_retries`` is used up (then MaxRetriesExceededError, or
  the ``exc`` given to ``retry``). ``autoretry_for`` retries the same way.
- The hooks run (``on_success``, ``on_failure``, ``on_retry``, ``after_return``), and the
  ``link``/``link_error`` signatures are applied; ``task_store_eager_result`` also stores
  the final state in the result backend.
- The task signals fire as Celery's eager tracer sends them (``eager_*`` lifecycle points):
  ``task_prerun``, then ``task_success``/``task_failure``/``task_retry``, then
  ``task_postrun`` on every run. An error or Retry that propagates skips the middle one and
  ``task_postrun`` gets ``state``/``retval`` None. ``task_received`` is a worker's only.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import traceback
from typing import TYPE_CHECKING, Any

from .. import lifecycle, protocol, states
from ..backends.base import build_meta, encode_exception
from ..errors import Retry
from ..lifecycle import EagerRun, Point
from ..task import Request, _current_request, pop_request, push_request
from .execute import Outcome, result_expires_s, run_coroutine

if TYPE_CHECKING:
    from ..result import EagerResult
    from ..task import Task

logger = logging.getLogger(__name__)


def run_eagerly(
    task: Task,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    task_id: str | None = None,
    retries: int = 0,
    throw: bool | None = None,
    headers: dict[str, Any] | None = None,
    link: Any = None,
    link_error: Any = None,
    **options: Any,
) -> EagerResult:
    from ..result import EagerResult

    task_id = task_id or protocol.new_id()
    propagate = bool(task.app.conf.task_eager_propagates if throw is None else throw)
    while True:
        request = _request(task, task_id, args, kwargs, retries, headers, options)
        token = push_request(request)
        run = EagerRun(task, request)
        began = time.monotonic()
        try:
            _emit(lifecycle.eager_started, run, request)
            value = task(*args, **kwargs)
            if asyncio.iscoroutine(value):
                value = run_coroutine(value)
        except Exception as exc:
            einfo = traceback.format_exc()
            outcome = _retry_or_failure(task, exc, retries)
            is_retry = isinstance(outcome, Retry)
            if is_retry:
                _hook(task, "on_retry", task_id, _reason(outcome), task_id, args, kwargs, einfo)
            else:
                _errbacks(task, link_error, request, outcome, einfo)  # before on_failure
                _hook(task, "on_failure", task_id, outcome, task_id, args, kwargs, einfo)
            if propagate:  # Celery's: even a Retry leaves apply() when exceptions propagate
                _emit(lifecycle.eager_finished, run, Outcome(""))
                if outcome is exc:
                    raise
                raise outcome from exc
            ended = Outcome(states.RETRY if is_retry else states.FAILURE, None, outcome, einfo)
            _emit(lifecycle.eager_retried if is_retry else lifecycle.eager_failed, run, ended)
            if is_retry:  # eager retries run again at once, with the same id
                _emit(lifecycle.eager_finished, run, ended)
                retries += 1
                args = tuple(getattr(outcome, "args_override", args))
                kwargs = dict(getattr(outcome, "kwargs_override", kwargs))
                continue
            _hook(
                task, "after_return", task_id, states.FAILURE, outcome, task_id, args, kwargs, einfo
            )
            meta = build_meta(task_id, states.FAILURE, encode_exception(outcome), traceback=einfo)
            _store(task, task_id, meta, request)
            _emit(lifecycle.eager_finished, run, ended)
            return EagerResult(task_id, meta, app=task.app)
        finally:
            pop_request(token)
        _hook(task, "on_success", task_id, value, task_id, args, kwargs)
        done = Outcome(states.SUCCESS, value, runtime_s=time.monotonic() - began)
        _emit(lifecycle.eager_succeeded, run, done)
        _hook(task, "after_return", task_id, states.SUCCESS, value, task_id, args, kwargs, None)
        meta = build_meta(task_id, states.SUCCESS, value)
        _store(task, task_id, meta, request)
        _callbacks(task, link, request, value)
        _emit(lifecycle.eager_finished, run, done)
        return EagerResult(task_id, meta, app=task.app)


def _emit(point: Point, run: EagerRun, *rest: Any) -> None:
    if point.hooks:  # a signal with receivers subscribed the signals view
        point.emit(None, run, *rest)


def _signatures(links: Any) -> list[Any]:
    if not links:
        return []
    return list(links) if isinstance(links, (list, tuple)) else [links]


def _callbacks(task: Task, links: Any, request: Request, value: Any) -> None:
    """``link``: each callback gets the result, as Celery's: ``apply_async``, so it runs
    here too under ``task_always_eager`` and is sent to the broker otherwise."""
    from ..canvas import maybe_signature

    for link in _signatures(links):
        maybe_signature(link, app=task.app).apply_async(
            (value,), parent_id=request.id, root_id=request.root_id, add_to_parent=False
        )


def _errbacks(task: Task, links: Any, request: Request, exc: Exception, einfo: str) -> None:
    """``link_error``: Celery's rule, as a worker applies it (workflow.call_errbacks)."""
    errbacks = _signatures(links)
    if errbacks:
        from .workflow import Origin, call_errbacks

        origin = Origin(task_id=str(request.id), root_id=str(request.root_id or request.id))
        call_errbacks(task.app, errbacks, request, exc, einfo, origin)


def _request(
    task: Task,
    task_id: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    retries: int,
    headers: dict[str, Any] | None,
    options: dict[str, Any],
) -> Request:
    parent = _current_request.get()
    return Request(
        id=task_id,
        task=task.name,
        args=list(args),
        kwargs=kwargs,
        retries=retries,
        is_eager=True,
        called_directly=False,
        parent_id=parent.id if parent else None,
        root_id=(parent.root_id if parent else None) or task_id,
        hostname=socket.gethostname(),
        headers=headers,
        timelimit=(task.time_limit, task.soft_time_limit),
        ignore_result=bool(
            options.get("ignore_result")
            if options.get("ignore_result") is not None
            else (
                task.ignore_result
                if task.ignore_result is not None
                else task.app.conf.task_ignore_result
            )
        ),
        delivery_info={
            "is_eager": True,
            "exchange": options.get("exchange"),
            "routing_key": options.get("routing_key"),
            "priority": options.get("priority"),
        },
    )


def _retry_or_failure(task: Task, exc: Exception, retries: int) -> Exception:
    """The Retry a task raised or ``autoretry_for`` asks for, else the error to report."""
    if isinstance(exc, Retry) or not task.autoretry_for:
        return exc
    if not isinstance(exc, task.autoretry_for) or (
        task.dont_autoretry_for and isinstance(exc, task.dont_autoretry_for)
    ):
        return exc
    retry_kwargs = dict(task.retry_kwargs)
    retry_kwargs.pop("countdown", None)
    try:
        task.retry(exc=exc, countdown=task.backoff_delay(retries), **retry_kwargs)
    except Retry as retry:
        return retry
    except Exception as final:  # retries used up: the task's own error, or MaxRetries...
        return final
    return exc


def _store(task: Task, task_id: str, meta: Any, request: Request) -> None:
    """``task_store_eager_result``: keep the outcome where ``AsyncResult(id)`` finds it."""
    app = task.app
    wanted = getattr(task, "store_eager_result", None)  # @app.task(store_eager_result=True)
    if wanted is None:
        wanted = app.conf.task_store_eager_result
    if not wanted or request.ignore_result:
        return
    app.backend.store(task_id, meta, result_expires_s(app))


def _reason(retry: Exception) -> Exception:
    reason = getattr(retry, "exc", None)
    return reason if isinstance(reason, Exception) else retry


def _hook(task: Task, name: str, task_id: str, *arguments: Any) -> None:
    try:
        getattr(task, name)(*arguments)
    except Exception:  # a failing hook must not change the task's own outcome
        logger.exception("task %s[%s] hook %s raised", task.name, task_id, name)
