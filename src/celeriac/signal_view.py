"""Celery's signals as a view of the lifecycle (``celeriac.lifecycle``).

Each signal's hook is subscribed to its lifecycle point only while the signal has
receivers, so an unused signal costs the emitter one truth test. Senders and keyword
arguments are Celery's: the task object for task signals, the consumer for
``task_received``/``task_rejected``/``task_unknown``, the hostname for ``celeryd_*``,
``worker_process_*`` and ``worker_shutting_down``.
"""

from __future__ import annotations

import traceback as tb_module
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import lifecycle, signals
from .lifecycle import EagerRun, OutgoingMessage, Point, Terminated
from .task import pop_request, push_request

if TYPE_CHECKING:
    from .brokers.base import Delivery
    from .protocol import TaskMessage
    from .worker.execute import ExecContext, Job, Outcome


class ExceptionInfo:
    """What Celery's ``einfo`` argument offers: the exception, its type, traceback and text."""

    def __init__(self, exc: BaseException, traceback_text: str | None = None) -> None:
        self.exception = exc
        self.type = type(exc)
        self.tb: TracebackType | None = exc.__traceback__
        self.traceback = traceback_text or "".join(tb_module.format_exception(exc))
        self.exc_info = (self.type, exc, self.tb)
        self.internal = False

    def __str__(self) -> str:
        return self.traceback

    def __repr__(self) -> str:
        return f"<ExceptionInfo: {self.exception!r}>"


class WorkerRequest:
    """The request ``task_received`` and ``task_revoked`` pass: Celery's worker-side view of
    a message (``name``, ``id``, ``task`` the task object, ``args``, ``kwargs``, ...)."""

    def __init__(self, ctx: ExecContext, job: Job) -> None:
        message = job.message
        headers = message.headers
        self.id = message.id
        self.name = message.task
        self.task = job.task
        self.args = message.args
        self.kwargs = message.kwargs
        self.headers = headers
        self.properties = message.properties
        self.delivery_info = {
            **(message.properties.get("delivery_info") or {}),
            "queue": job.delivery.queue,
        }
        self.hostname = ctx.nodename
        self.eta = headers.get("eta")
        self.expires = headers.get("expires")
        self.root_id = headers.get("root_id")
        self.parent_id = headers.get("parent_id")
        self.argsrepr = headers.get("argsrepr")
        self.kwargsrepr = headers.get("kwargsrepr")
        self.message = message
        self.request_dict = headers

    def __repr__(self) -> str:
        return f"<WorkerRequest {self.name}[{self.id}]>"


def bind(
    watched: signals.Signal | tuple[signals.Signal, ...], point: Point, hook: Callable[..., Any]
) -> None:
    """Keep *hook* subscribed to *point* exactly while one of *watched* has receivers."""
    group = watched if isinstance(watched, tuple) else (watched,)

    def follow(_listening: bool) -> None:
        point.keep(hook, any(group))

    for signal in group:
        signal.watch(follow)


# the client
def _before_publish(message: OutgoingMessage) -> None:
    retry_policy = message.app.conf.task_publish_retry_policy
    signals.before_task_publish.send(
        sender=message.name,
        body=message.body(),
        exchange=message.exchange,
        routing_key=message.routing_key,
        headers=message.headers,  # a receiver's changes go on the wire
        properties=message.properties,
        declare=[],
        retry_policy=dict(retry_policy or {}),
    )


def _after_publish(message: OutgoingMessage) -> None:
    signals.after_task_publish.send(
        sender=message.name,
        body=message.body(),
        headers=message.headers,
        exchange=message.exchange,
        routing_key=message.routing_key,
    )


# one task
def _received(ctx: ExecContext, job: Job) -> None:
    signals.task_received.send(sender=ctx.consumer, request=WorkerRequest(ctx, job))


def _unknown(ctx: ExecContext, delivery: Delivery, message: TaskMessage, exc: Exception) -> None:
    signals.task_unknown.send(
        sender=ctx.consumer, message=message, exc=exc, name=message.task, id=message.id
    )


def _rejected(ctx: ExecContext, delivery: Delivery, exc: Exception | None) -> None:
    signals.task_rejected.send(sender=ctx.consumer, message=delivery, exc=exc)


class TerminatedRequest:
    """The request of a task the prefork manager terminated: what its slot table knew."""

    def __init__(self, stopped: Terminated) -> None:
        self.id = stopped.id
        self.name = stopped.name
        self.task = stopped.app.tasks.get(stopped.name)
        self.hostname = stopped.hostname

    def __repr__(self) -> str:
        return f"<TerminatedRequest {self.name}[{self.id}]>"


def _revoked(
    ctx: ExecContext | None,
    job: Job | Terminated,
    terminated: bool,
    signum: int | None,
    expired: bool,
) -> None:
    if isinstance(job, Terminated):
        request: Any = TerminatedRequest(job)
    else:
        assert ctx is not None
        request = WorkerRequest(ctx, job)
    signals.task_revoked.send(
        sender=request.task,
        request=request,
        terminated=terminated,
        signum=signum,
        expired=expired,
    )


def _prerun(ctx: ExecContext | None, job: Job | EagerRun, request: Any) -> None:
    message = job.message
    signals.task_prerun.send(
        sender=job.task, task_id=message.id, task=job.task, args=message.args, kwargs=message.kwargs
    )


def _with_request(job: Job | EagerRun, send: Callable[[], Any]) -> None:
    """Send with the task's request current, as Celery does (``sender.request.id`` works)."""
    if job.request is None:
        send()
        return
    token = push_request(job.request)
    try:
        send()
    finally:
        pop_request(token)


def _success(ctx: ExecContext | None, job: Job | EagerRun, outcome: Outcome) -> None:
    _with_request(
        job,
        lambda: signals.task_success.send(
            sender=job.task, result=outcome.value, runtime=outcome.runtime_s
        ),
    )


def _failure(ctx: ExecContext | None, job: Job | EagerRun, outcome: Outcome) -> None:
    exc = outcome.exc
    assert exc is not None
    message = job.message
    _with_request(
        job,
        lambda: signals.task_failure.send(
            sender=job.task,
            task_id=message.id,
            exception=exc,
            args=message.args,
            kwargs=message.kwargs,
            traceback=exc.__traceback__,
            einfo=ExceptionInfo(exc, outcome.traceback),
        ),
    )


def _retry(ctx: ExecContext | None, job: Job | EagerRun, outcome: Outcome) -> None:
    retry = outcome.exc
    assert retry is not None
    _with_request(
        job,
        lambda: signals.task_retry.send(
            sender=job.task,
            request=job.request,
            reason=retry,
            einfo=ExceptionInfo(retry, outcome.traceback),
        ),
    )


def _postrun(ctx: ExecContext | None, job: Job | EagerRun, outcome: Outcome) -> None:
    message = job.message
    retval = outcome.value if outcome.exc is None else outcome.exc
    _with_request(
        job,
        lambda: signals.task_postrun.send(
            sender=job.task,
            task_id=message.id,
            task=job.task,
            args=message.args,
            kwargs=message.kwargs,
            retval=retval,
            state=outcome.state or None,  # none when task.apply(throw=True) raises, as Celery's
        ),
    )


def _internal_error(
    ctx: ExecContext, delivery: Delivery, job: Job | None, exc: BaseException
) -> None:
    message = job.message if job is not None else None
    signals.task_internal_error.send(
        sender=job.task if job is not None else None,
        task_id=message.id if message is not None else None,
        args=message.args if message is not None else None,
        kwargs=message.kwargs if message is not None else None,
        request=job.request if job is not None else None,
        exception=exc,
        traceback=exc.__traceback__,
        einfo=ExceptionInfo(exc),
    )


# the worker
def _worker_initialised(worker: Any) -> None:
    if signals.celeryd_init:
        signals.celeryd_init.send(
            sender=worker.hostname,
            instance=worker,
            conf=worker.app.conf,
            options=dict(worker.options),
        )
    if signals.worker_init:
        signals.worker_init.send(sender=worker)


def _worker_set_up(worker: Any) -> None:
    signals.celeryd_after_setup.send(sender=worker.hostname, instance=worker, conf=worker.app.conf)


def install() -> None:
    """Bind every signal to its point (called once, when ``celeriac.signals`` is imported)."""
    pairs: list[tuple[Any, Point, Callable[..., Any]]] = [
        (signals.before_task_publish, lifecycle.task_publishing, _before_publish),
        (signals.after_task_publish, lifecycle.task_published, _after_publish),
        (signals.task_received, lifecycle.task_received, _received),
        (signals.task_unknown, lifecycle.task_unknown, _unknown),
        (signals.task_rejected, lifecycle.task_rejected, _rejected),
        (signals.task_revoked, lifecycle.task_revoked, _revoked),
        (signals.task_prerun, lifecycle.task_started, _prerun),
        (signals.task_success, lifecycle.task_succeeded, _success),
        (signals.task_failure, lifecycle.task_failed, _failure),
        (signals.task_retry, lifecycle.task_retried, _retry),
        (signals.task_postrun, lifecycle.task_finished, _postrun),
        (signals.task_internal_error, lifecycle.task_internal_error, _internal_error),
        (signals.task_prerun, lifecycle.eager_started, _prerun),
        (signals.task_success, lifecycle.eager_succeeded, _success),
        (signals.task_failure, lifecycle.eager_failed, _failure),
        (signals.task_retry, lifecycle.eager_retried, _retry),
        (signals.task_postrun, lifecycle.eager_finished, _postrun),
        (
            (signals.celeryd_init, signals.worker_init),
            lifecycle.worker_initialised,
            _worker_initialised,
        ),
        (signals.celeryd_after_setup, lifecycle.worker_set_up, _worker_set_up),
        (
            signals.worker_ready,
            lifecycle.worker_ready,
            lambda worker: signals.worker_ready.send(sender=worker),
        ),
        (
            signals.worker_process_init,
            lifecycle.worker_process_started,
            lambda hostname: signals.worker_process_init.send(sender=hostname),
        ),
        (
            signals.worker_process_shutdown,
            lifecycle.worker_process_stopping,
            lambda hostname, pid, exitcode: signals.worker_process_shutdown.send(
                sender=hostname, pid=pid, exitcode=exitcode
            ),
        ),
        (
            signals.worker_shutting_down,
            lifecycle.worker_shutting_down,
            lambda hostname, sig, how, exitcode: signals.worker_shutting_down.send(
                sender=hostname, sig=sig, how=how, exitcode=exitcode
            ),
        ),
        (
            signals.worker_shutdown,
            lifecycle.worker_stopped,
            lambda worker: signals.worker_shutdown.send(sender=worker),
        ),
        (
            signals.heartbeat_sent,
            lifecycle.worker_heartbeat,
            lambda liveness: signals.heartbeat_sent.send(sender=liveness),
        ),
    ]
    for watched, point, hook in pairs:
        bind(watched, point, hook)
