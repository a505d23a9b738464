"""Run one task message: accept it, call the task, store the result, ack.

The steps are plain functions so every pool composes them the same way:
``accept`` (parse, look up, expiry, ETA) → ``begin`` (early ack, STARTED) → ``invoke`` (the
call itself, in the pool's slot) → ``finish`` (result, retry, late ack).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .. import lifecycle, protocol, states
from ..backends.base import build_meta, encode_exception
from ..brokers.base import Delivery
from ..errors import Ignore, InvalidMessage, NotRegistered, Reject, Retry, TaskRevokedError
from ..flow import gate as flow_gate
from ..task import Request, Task, pop_request, push_request
from . import request_fields, revoked, workflow
from .place import Place, current_place

if TYPE_CHECKING:
    from ..app import Celeriac

logger = logging.getLogger(__name__)


@dataclass
class ExecContext:
    """What every execution in one consumer shares."""

    app: Celeriac
    nodename: str
    place_base: Place
    place_extras: Callable[[], Place] | None = None
    revoked: set[str] = field(default_factory=set)
    consumer: Any = None  # the Consumer: the sender of task_received, task_unknown, ...
    on_task_start: Callable[[Job], None] | None = None
    on_task_end: Callable[[Job], None] | None = None
    on_defer: Callable[[float], None] | None = None
    ack: Callable[[Sequence[str]], None] | None = None  # the consumer defers acks
    # a late ack (after the task and its result): the consumer confirms deferred results
    # before it sends one
    late_ack: Callable[[Sequence[str]], None] | None = None
    processed: int = 0
    # results of plain tasks are sent without waiting for Redis's answer; the consumer
    # reads the answers (backend.confirm_stored) before its next fetch carries a late ack
    defer_stores: bool = False

    def ack_now_or_later(self, receipt: str, after_result: bool = False) -> None:
        ack = (self.late_ack if after_result else None) or self.ack or self.app.broker.ack
        ack([receipt])


@dataclass
class Job:
    """An accepted message, ready to run."""

    delivery: Delivery
    message: protocol.TaskMessage
    task: Task
    acked: bool = False
    request: Request | None = None
    flow_held: Any = None  # the slot and unique lock flow control gave it (flow/gate.py)


@dataclass
class Outcome:
    state: str
    value: Any = None
    exc: BaseException | None = None
    traceback: str | None = None
    runtime_s: float = 0.0
    place: Place = field(default_factory=dict)


# accept
def accept(ctx: ExecContext, delivery: Delivery) -> Job | None:
    """The job to run, or None when the message was handled here (bad, expired, deferred)."""
    broker = ctx.app.broker
    try:
        message = protocol.parse_envelope(delivery.raw, ctx.app.conf.accept_content)
    except InvalidMessage as exc:
        _reject_invalid(ctx, delivery, exc.reason, exc.task_id, exc)
        if lifecycle.task_rejected.hooks:
            lifecycle.task_rejected.emit(ctx, delivery, exc)
        return None
    if not delivery.receipt:  # a task, but without a delivery tag the broker could not track it
        reason = (
            "properties.delivery_tag is not a string; leave it out and the broker gives the "
            "message a tag"
        )
        _reject_invalid(
            ctx, delivery, reason, message.id, InvalidMessage(reason, task_id=message.id)
        )
        return None
    try:
        task = ctx.app.lookup(message.task)
    except NotRegistered as exc:
        logger.error(
            "received unregistered task %s[%s]; moved to the dead-letter list",
            message.task,
            message.id,
        )
        _store_failure(ctx, message.id, exc, traceback_text=None, message=message)
        workflow.on_not_run(ctx.app, message, states.FAILURE, exc)
        broker.dead_letter(delivery, f"unregistered task {message.task!r}")
        if lifecycle.task_unknown.hooks:
            lifecycle.task_unknown.emit(ctx, delivery, message, exc)
        return None
    if message.id in ctx.revoked or revoked.is_revoked(message.id):
        _discard(ctx, Job(delivery, message, task), "revoked")
        return None
    headers = message.headers
    if headers.get("stamped_headers") and revoked.revoked_stamp(headers, ctx.revoked):
        _discard(ctx, Job(delivery, message, task), "revoked")  # revoke_by_stamped_headers
        return None
    if not (headers.get("expires") or headers.get("eta")):
        return _admitted(ctx, Job(delivery, message, task))  # the common case: no ETA
    now = datetime.now(timezone.utc)
    expires = message.expires
    if expires is not None and expires <= now:
        _discard(ctx, Job(delivery, message, task), "expired")
        return None
    eta = message.eta
    if eta is not None and (eta - now).total_seconds() > 0.002:
        _defer(ctx, delivery, message, eta)
        return None
    return _admitted(ctx, Job(delivery, message, task))


def _admitted(ctx: ExecContext, job: Job) -> Job | None:
    """Flow control: the job, or None when it was parked (or its key failed)."""
    task = job.task
    if not (task.rate_limit or task.flow_options or ctx.app.conf.task_default_rate_limit):
        return job  # nothing limits this task: a few truth tests on the hot path
    try:
        flow = flow_gate.spec(ctx, task)
        if flow is None or flow_gate.admit(ctx, job, flow):
            return job
    except flow_gate.KeyFailed as exc:  # fails this one task, never the worker
        logger.error("task %s[%s]: %s", job.message.task, job.message.id, exc)
        _store_failure(ctx, job.message.id, exc, traceback_text=None, message=job.message)
        workflow.on_not_run(ctx.app, job.message, states.FAILURE, exc)
        ctx.ack_now_or_later(job.delivery.receipt)
    return None


def _defer(
    ctx: ExecContext, delivery: Delivery, message: protocol.TaskMessage, eta: datetime
) -> None:
    logger.debug("task %s[%s] due at %s; parked broker-side", message.task, message.id, eta)
    ctx.app.broker.defer(delivery, eta.timestamp())
    if ctx.on_defer is not None:
        ctx.on_defer(eta.timestamp())
    if lifecycle.task_deferred.hooks:
        lifecycle.task_deferred.emit(ctx, delivery, message)


def _reject_invalid(
    ctx: ExecContext, delivery: Delivery, reason: str, task_id: str | None, exc: Exception
) -> None:
    logger.error(
        "invalid message %s on %r: %s; moved to the dead-letter list",
        task_id or delivery.receipt or "(no id)",
        delivery.queue,
        reason,
    )
    if task_id:
        _store_failure(ctx, task_id, exc, traceback_text=None)
    if delivery.receipt:  # without one, the broker dead-lettered it as it fetched it
        ctx.app.broker.dead_letter(delivery, reason)


def _discard(ctx: ExecContext, job: Job, why: str) -> None:
    delivery, message = job.delivery, job.message
    meta = build_meta(
        message.id,
        states.REVOKED,
        encode_exception(TaskRevokedError(why)),
        group_id=message.headers.get("group"),
        parent_id=message.headers.get("parent_id"),
    )
    _store(ctx, message.id, meta)
    workflow.on_not_run(ctx.app, message, states.REVOKED, TaskRevokedError(why))
    if job.task.flow_options:
        flow_gate.dropped(ctx, job.task, message.args, message.kwargs, message.id)
    ctx.ack_now_or_later(delivery.receipt)
    if lifecycle.task_revoked.hooks:
        lifecycle.task_revoked.emit(ctx, job, False, None, why == "expired")


def _store_failure(
    ctx: ExecContext,
    task_id: str,
    exc: BaseException,
    traceback_text: str | None,
    message: protocol.TaskMessage | None = None,
) -> None:
    headers = message.headers if message else {}
    meta = build_meta(
        task_id,
        states.FAILURE,
        encode_exception(exc),
        traceback=traceback_text,
        group_id=headers.get("group"),
        parent_id=headers.get("parent_id"),
    )
    _store(ctx, task_id, meta)


def _store(ctx: ExecContext, task_id: str, meta: dict[str, Any]) -> None:
    try:
        ctx.app.backend.store(task_id, meta, result_expires_s(ctx.app))
    except Exception:  # the backend being down must not kill the consumer
        logger.exception("could not store state %s of task %s", meta.get("status"), task_id)


def _store_deferred(ctx: ExecContext, task_id: str, meta: dict[str, Any]) -> None:
    try:
        backend: Any = ctx.app.backend  # a RedisBackend: serve_in_process checked
        backend.store_deferred(task_id, meta, result_expires_s(ctx.app))
    except Exception:  # the backend being down must not kill the consumer
        logger.exception("could not store state %s of task %s", meta.get("status"), task_id)


def _plain(message: protocol.TaskMessage) -> bool:
    """No workflow hangs on this task, so nothing reads its result in this worker."""
    embed = message.embed
    return not (
        embed.get("chain") or embed.get("chord") or embed.get("callbacks") or embed.get("errbacks")
    )


def result_expires_s(app: Celeriac) -> float | None:
    value = app.conf.result_expires
    if value is None:
        return None
    return float(value.total_seconds() if hasattr(value, "total_seconds") else value)


# begin / invoke / finish
def acks_late(ctx: ExecContext, task: Task) -> bool:
    return bool(task.acks_late if task.acks_late is not None else ctx.app.conf.task_acks_late)


def _ignores_result(ctx: ExecContext, job: Job) -> bool:
    if job.message.headers.get("ignore_result"):
        return True
    if job.task.ignore_result is not None:
        return bool(job.task.ignore_result)
    return bool(ctx.app.conf.task_ignore_result)


def begin(ctx: ExecContext, job: Job) -> None:
    """Ack early (Celery's default) and record STARTED when tracking is on."""
    message = job.message
    if lifecycle.task_received.hooks:
        lifecycle.task_received.emit(ctx, job)
    if not acks_late(ctx, job.task):
        ctx.ack_now_or_later(job.delivery.receipt)
        job.acked = True
    track = job.task.track_started
    if track is None:
        track = ctx.app.conf.task_track_started
    if track and not _ignores_result(ctx, job):
        place = current_place(ctx.place_base, ctx.place_extras)
        meta = build_meta(
            message.id,
            states.STARTED,
            {"pid": place["pid"], "hostname": ctx.nodename},
            place=place,
        )
        _store(ctx, message.id, meta)
    revoked.started(message.id, message.headers.get("stamps"))
    if ctx.on_task_start is not None:
        ctx.on_task_start(job)


def make_request(ctx: ExecContext, job: Job, place: Place) -> Request:
    message = job.message
    headers = message.headers
    properties = message.properties
    custom = request_fields.custom_headers(headers)
    hard, soft = message.timelimit
    request = Request.of(
        headers=custom or None,
        properties=properties,
        time_limit=hard,
        soft_time_limit=soft,
        argsrepr=headers.get("argsrepr"),
        kwargsrepr=headers.get("kwargsrepr"),
        shadow=headers.get("shadow"),
        content_type=message.content_type,
        content_encoding=request_fields.content_encoding(message.content_type),
        id=message.id,
        task=message.task,
        args=message.args,
        kwargs=message.kwargs,
        retries=message.retries,
        eta=headers.get("eta"),
        expires=headers.get("expires"),
        delivery_info=request_fields.delivery_info(properties, job.delivery.queue),
        reply_to=message.properties.get("reply_to"),
        correlation_id=message.properties.get("correlation_id"),
        root_id=headers.get("root_id"),
        parent_id=headers.get("parent_id"),
        group=headers.get("group"),
        group_index=headers.get("group_index"),
        origin=headers.get("origin"),
        hostname=ctx.nodename,
        callbacks=message.embed.get("callbacks"),
        errbacks=message.embed.get("errbacks"),
        chain=message.embed.get("chain"),
        chord=message.embed.get("chord"),
        timelimit=message.timelimit,
        ignore_result=bool(headers.get("ignore_result")),
        called_directly=False,
        place=place,
        replaced_task_nesting=headers.get("replaced_task_nesting") or 0,
        stamped_headers=headers.get("stamped_headers") or [],
        stamps=headers.get("stamps") or {},
    )
    if custom:  # Celery puts each of the sender's own headers on the request too
        for key, value in custom.items():
            request.__dict__.setdefault(key, value)  # never in place of a protocol field
    return request


_loops = threading.local()


def run_coroutine(coro: Any) -> Any:
    """Run an ``async def`` task's coroutine on this thread's own event loop."""
    loop = getattr(_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = _loops.loop = asyncio.new_event_loop()
    return loop.run_until_complete(coro)


def invoke(ctx: ExecContext, job: Job) -> Outcome:
    """Call the task in the current slot (thread, greenlet or process)."""
    place = current_place(ctx.place_base, ctx.place_extras)
    started = time.monotonic()
    place["started_at"] = time.time()
    try:
        request = make_request(ctx, job, place)
    except Exception as exc:  # a message that parsed but cannot describe its request
        outcome = Outcome(states.FAILURE, exc=exc, traceback=traceback.format_exc(), place=place)
        place["finished_at"] = time.time()
        return outcome
    job.request = request
    token = push_request(request)
    try:
        if lifecycle.task_started.hooks:
            lifecycle.task_started.emit(ctx, job, request)
        value = job.task(*job.message.args, **job.message.kwargs)
        if job.task.is_async or asyncio.iscoroutine(value):
            value = run_coroutine(value)
        outcome = Outcome(states.SUCCESS, value=value)
    except Exception as exc:
        outcome = _outcome_for_exception(job, exc)
    finally:
        pop_request(token)
    place["finished_at"] = time.time()
    outcome.runtime_s = time.monotonic() - started
    outcome.place = place
    return outcome


async def invoke_async(ctx: ExecContext, job: Job) -> Outcome:
    """``invoke`` for the asyncio pool: coroutines run on the running loop."""
    place = current_place(ctx.place_base, ctx.place_extras)
    request = make_request(ctx, job, place)
    job.request = request
    token = push_request(request)
    started = time.monotonic()
    place["started_at"] = time.time()
    try:
        if lifecycle.task_started.hooks:
            lifecycle.task_started.emit(ctx, job, request)
        value = job.task(*job.message.args, **job.message.kwargs)
        if asyncio.iscoroutine(value):
            value = await value
        outcome = Outcome(states.SUCCESS, value=value)
    except Exception as exc:
        outcome = _outcome_for_exception(job, exc)
    finally:
        pop_request(token)
    place["finished_at"] = time.time()
    outcome.runtime_s = time.monotonic() - started
    outcome.place = place
    return outcome


def _outcome_for_exception(job: Job, exc: Exception) -> Outcome:
    if isinstance(exc, Retry):
        return Outcome(states.RETRY, exc=exc, traceback=traceback.format_exc())
    if isinstance(exc, Reject):
        return Outcome(states.REJECTED, exc=exc)
    if isinstance(exc, Ignore):  # replaced (Task.replace): the replacement stores the result
        return Outcome(states.IGNORED, exc=exc)
    task = job.task
    if (
        task.autoretry_for
        and isinstance(exc, task.autoretry_for)
        and not (task.dont_autoretry_for and isinstance(exc, task.dont_autoretry_for))
    ):
        try:
            retries = job.request.retries if job.request else 0
            countdown = task.backoff_delay(retries)
            kwargs = dict(task.retry_kwargs)
            kwargs.pop("countdown", None)
            task.retry(exc=exc, countdown=countdown, **kwargs)
        except Retry as retry:
            return Outcome(states.RETRY, exc=retry, traceback=traceback.format_exc())
        except Exception as final:
            exc = final
    return Outcome(states.FAILURE, exc=exc, traceback=traceback.format_exc())


def finish(ctx: ExecContext, job: Job, outcome: Outcome) -> None:
    """Store the outcome, send a retry if asked, and ack (late) or reject."""
    message = job.message
    try:
        if outcome.state == states.SUCCESS:
            _finish_success(ctx, job, outcome)
        elif outcome.state == states.RETRY:
            _finish_retry(ctx, job, outcome)
            if lifecycle.task_retried.hooks:
                lifecycle.task_retried.emit(ctx, job, outcome)
        elif outcome.state == states.REJECTED:
            _finish_reject(ctx, job, outcome)
            return
        elif outcome.state == states.IGNORED:
            pass  # nothing stored, nothing follows: the task said so
        else:
            _finish_failure(ctx, job, outcome)
    finally:
        if lifecycle.task_finished.hooks:
            lifecycle.task_finished.emit(ctx, job, outcome)
        ctx.processed += 1
        revoked.finished(message.id)
        if job.flow_held is not None:
            flow_gate.finished(ctx, job, outcome.state)
        if ctx.on_task_end is not None:
            ctx.on_task_end(job)
    if not job.acked:
        ctx.ack_now_or_later(job.delivery.receipt, after_result=True)
        job.acked = True
    if logger.isEnabledFor(logging.DEBUG):
        place = outcome.place
        logger.debug(
            "task %s[%s] %s in %.4fs; ran in pid %s (ppid %s) thread %s%s%s%s",
            message.task,
            message.id,
            outcome.state,
            outcome.runtime_s,
            place.get("pid"),
            place.get("ppid"),
            place.get("thread_name"),
            f" child {place['child_index']}" if place.get("child_index") is not None else "",
            f" greenlet {place['greenlet']}" if place.get("greenlet") else "",
            f" asyncio task {place['asyncio_task']}" if place.get("asyncio_task") else "",
        )


def _meta_for(
    job: Job, state: str, result: Any, outcome: Outcome, children: list[Any] | None = None
) -> dict[str, Any]:
    headers = job.message.headers
    return build_meta(
        job.message.id,
        state,
        result,
        traceback=outcome.traceback,
        children=children,
        group_id=headers.get("group"),
        parent_id=headers.get("parent_id"),
        place=outcome.place,
    )


def _finish_success(ctx: ExecContext, job: Job, outcome: Outcome) -> None:
    children = workflow.send_followers(ctx.app, job, outcome.value)
    if not _ignores_result(ctx, job):
        meta = _meta_for(job, states.SUCCESS, outcome.value, outcome, children)
        if ctx.defer_stores and _plain(job.message):
            _store_deferred(ctx, job.message.id, meta)
        else:
            _store(ctx, job.message.id, meta)
    if job.message.embed.get("chord"):
        workflow.chord_part_succeeded(ctx.app, job.message, outcome.value)
    if _has_hook(job.task, "on_success"):
        _call_hook(
            job.task.on_success, outcome.value, job.message.id, job.message.args, job.message.kwargs
        )
    if lifecycle.task_succeeded.hooks:
        lifecycle.task_succeeded.emit(ctx, job, outcome)
    _after_return(job, states.SUCCESS, outcome.value)


def _finish_failure(ctx: ExecContext, job: Job, outcome: Outcome) -> None:
    exc = outcome.exc
    assert exc is not None
    if not _ignores_result(ctx, job) or job.task.store_errors_even_if_ignored:
        _store(ctx, job.message.id, _meta_for(job, states.FAILURE, encode_exception(exc), outcome))
    workflow.on_failure(ctx.app, job, exc, outcome.traceback)
    _call_hook(
        job.task.on_failure,
        exc,
        job.message.id,
        job.message.args,
        job.message.kwargs,
        outcome.traceback,
    )
    if lifecycle.task_failed.hooks:  # the log-lines view logs the error with its traceback
        lifecycle.task_failed.emit(ctx, job, outcome)
    _after_return(job, states.FAILURE, exc)


def _finish_retry(ctx: ExecContext, job: Job, outcome: Outcome) -> None:
    retry = outcome.exc
    assert isinstance(retry, Retry)
    message = job.message
    reason = retry.exc if retry.exc is not None else retry
    if not _ignores_result(ctx, job):
        _store(ctx, message.id, _meta_for(job, states.RETRY, encode_exception(reason), outcome))
    options = dict(getattr(retry, "options", {}) or {})
    options.pop("task_id", None)
    headers = message.headers
    send: dict[str, Any] = {
        "retries": message.retries + 1,
        "eta": getattr(retry, "eta", None),
        "queue": options.pop("queue", None) or job.delivery.queue,
        "root_id": headers.get("root_id"),
        "parent_id": headers.get("parent_id"),
        "group_id": headers.get("group"),
        "group_index": headers.get("group_index"),
        "priority": message.priority,
        "ignore_result": bool(headers.get("ignore_result")),
        "chain": message.embed.get("chain"),
        "chord": message.embed.get("chord"),
        "link": message.embed.get("callbacks"),
        "link_error": message.embed.get("errbacks"),
        "time_limit": message.timelimit[0],
        "soft_time_limit": message.timelimit[1],
        "expires": headers.get("expires"),
        "shadow": headers.get("shadow"),
        "reply_to": message.properties.get("reply_to"),
        # the sender's own headers, stamps and replace nesting go with the retry (Celery's)
        "headers": request_fields.retry_headers(headers),
    }
    send.update(options)  # what the task passed to retry() wins
    ctx.app.send_task(
        message.task,
        getattr(retry, "args_override", message.args),
        getattr(retry, "kwargs_override", message.kwargs),
        task_id=message.id,
        **send,
    )
    _call_hook(
        job.task.on_retry, reason, message.id, message.args, message.kwargs, outcome.traceback
    )


def _finish_reject(ctx: ExecContext, job: Job, outcome: Outcome) -> None:
    reject = outcome.exc
    assert isinstance(reject, Reject)
    broker = ctx.app.broker
    if not reject.requeue:
        # it never runs again: a FAILURE the caller's get() reads, errbacks and the chord
        # told, instead of a task left PENDING for ever (as Celery does)
        if not _ignores_result(ctx, job) or job.task.store_errors_even_if_ignored:
            meta = _meta_for(job, states.FAILURE, encode_exception(reject), outcome)
            _store(ctx, job.message.id, meta)
        workflow.on_failure(ctx.app, job, reject, outcome.traceback)
    if job.acked:
        logger.warning(
            "task %s[%s] rejected after its early ack; nothing to requeue",
            job.message.task,
            job.message.id,
        )
        return
    if reject.requeue:
        broker.requeue([job.delivery.receipt], to_front=False)
    else:
        broker.dead_letter(job.delivery, f"rejected by the task: {reject.reason!r}")
    job.acked = True
    ctx.processed += 1


def _call_hook(hook: Callable[..., Any], *args: Any) -> None:
    try:
        hook(*args)
    except Exception:
        logger.exception("task hook %s raised", getattr(hook, "__name__", hook))


def _has_hook(task: Task, name: str) -> bool:
    """Whether *task* has its own *name* hook (a base class's or an option), not the no-op."""
    return name in task.__dict__ or getattr(type(task), name) is not getattr(Task, name)


def _after_return(job: Job, state: str, value: Any) -> None:
    if not _has_hook(job.task, "after_return"):
        return
    _call_hook(
        job.task.after_return,
        state,
        value,
        job.message.id,
        job.message.args,
        job.message.kwargs,
        None,
    )


def handle(
    ctx: ExecContext,
    delivery: Delivery,
    run: Callable[[ExecContext, Job], Outcome | None] = invoke,
) -> None:
    """The whole path for one message in the current slot (solo, threads, green pools).
    *run* calls the task (the time-limit watchdog passes its own); None from it means the
    task's end was settled already and there is nothing to finish."""
    job = None
    try:
        job = accept(ctx, delivery)
        if job is None:
            return
        begin(ctx, job)
        outcome = run(ctx, job)
        if outcome is not None:
            finish(ctx, job, outcome)
    except Exception as exc:  # one message must never take the consumer down
        internal_error(ctx, delivery, job, exc)


def internal_error(ctx: ExecContext, delivery: Delivery, job: Job | None, exc: Exception) -> None:
    """The worker's own code failed on a message: log it, tell the views, go on."""
    logger.error(
        "internal error handling message %s from %r",
        delivery.receipt,
        delivery.queue,
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    if lifecycle.task_internal_error.hooks:
        lifecycle.task_internal_error.emit(ctx, delivery, job, exc)
