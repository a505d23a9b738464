"""What a worker does after a task finishes, from what its message carries (Celery's embed:
``callbacks``, ``errbacks``, ``chain``, ``chord``; shared/spec/celery-wire-protocol.md §3, §8).

On success: send the ``link`` callbacks and the next chain step, each with the result in
front of its args (unless immutable), before the result is stored, so the stored meta lists
them as ``children``; then, as a chord header part, record the part; the part that
completes the count sends the body with every result, in order.

On failure: record the chord part (the first failed part fails the body at once with a
ChordError naming it), store the same FAILURE under the ids of the chain steps that will
never run, and call the ``link_error`` errbacks as Celery does: in the worker with
``(request, exc, traceback)`` when the errback's function takes more than one argument,
otherwise sent as a task with the failed task's id.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import states
from ..backends.base import ChordClaim, ChordPart, build_meta, decode_exception, encode_exception
from ..canvas import Signature, chain, chord, group, maybe_signature
from ..errors import ChordError
from ..task import Request

if TYPE_CHECKING:
    from ..app import Celeriac
    from ..protocol import TaskMessage
    from ..result import AsyncResult, GroupResult
    from ..task import Task
    from .execute import Job

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Origin:
    """The task a follow-up comes from: what its chord part and chain need to know."""

    task_id: str
    root_id: str
    group_id: str | None = None
    group_index: int | None = None
    chord: Any = None  # the chord body's signature (dict) when this task is a header part

    @classmethod
    def of(cls, message: TaskMessage) -> Origin:
        headers = message.headers
        index = headers.get("group_index")
        return cls(
            task_id=message.id,
            root_id=headers.get("root_id") or message.id,
            group_id=headers.get("group"),
            group_index=index if isinstance(index, int) else None,
            chord=message.embed.get("chord"),
        )


# success
def send_followers(app: Celeriac, job: Job, value: Any) -> list[Any]:
    """Send the callbacks and the next chain step; returns the ``children`` to store
    (with what the task itself sent), as Celery's result tuples."""
    message = job.message
    sent: list[AsyncResult | GroupResult] = list(job.request.children if job.request else [])
    callbacks = message.embed.get("callbacks") or []
    steps = message.embed.get("chain") or []
    if not (callbacks or steps):  # the common case: nothing follows this task
        return [result.as_tuple() for result in sent]
    origin = Origin.of(message)
    if callbacks:
        try:
            sent += _send_callbacks(app, callbacks, value, origin)
        except Exception:  # a broken callback must not lose the task's own result
            logger.exception(
                "task %s[%s]: could not send its link callbacks", message.task, message.id
            )
    if steps:
        try:
            step = maybe_signature(steps[-1], app=app)
            result = step.apply_async(
                (value,),
                chain=list(steps[:-1]),
                parent_id=origin.task_id,
                root_id=origin.root_id,
                add_to_parent=False,
            )
            if result is not None:
                sent.append(result)
        except Exception as exc:
            logger.exception(
                "task %s[%s]: could not send the next chain step", message.task, message.id
            )
            fail_chain(app, steps, exc, None)
    return [result.as_tuple() for result in sent]


def _send_callbacks(
    app: Celeriac, callbacks: Sequence[Any], value: Any, origin: Origin
) -> list[AsyncResult | GroupResult]:
    """One callback is sent alone; several go out as one group (groups among them on
    their own), as Celery's worker does."""
    sigs = [maybe_signature(callback, app=app) for callback in callbacks]
    options: dict[str, Any] = {
        "parent_id": origin.task_id,
        "root_id": origin.root_id,
        "add_to_parent": False,
    }
    if len(sigs) == 1:
        result = sigs[0].apply_async((value,), **options)
        return [result] if result is not None else []
    results = [sig.apply_async((value,), **options) for sig in sigs if isinstance(sig, group)]
    singles = [sig for sig in sigs if not isinstance(sig, group)]
    if singles:
        results.append(group(singles, app=app).apply_async((value,), **options))
    return [result for result in results if result is not None]


def chord_part_succeeded(app: Celeriac, message: TaskMessage, value: Any) -> None:
    """After the result is stored: count this header part (no-op outside a chord)."""
    return_chord_part(app, Origin.of(message), states.SUCCESS, value)


# failure
def on_failure(app: Celeriac, job: Job, exc: BaseException, traceback_text: str | None) -> None:
    """After the FAILURE is stored: chord part, the rest of the chain, errbacks."""
    message = job.message
    origin = Origin.of(message)
    return_chord_part(app, origin, states.FAILURE, encode_exception(exc))
    fail_chain(app, message.embed.get("chain"), exc, traceback_text)
    errbacks = message.embed.get("errbacks") or []
    if errbacks:
        request = job.request or Request(id=message.id, task=message.task, called_directly=False)
        call_errbacks(app, errbacks, request, exc, traceback_text, origin)


def on_not_run(app: Celeriac, message: TaskMessage, state: str, exc: BaseException) -> None:
    """A task that never ran (revoked, expired, unregistered): its chord still counts it,
    and the chain after it fails rather than waiting forever."""
    return_chord_part(app, Origin.of(message), state, encode_exception(exc))
    fail_chain(app, message.embed.get("chain"), exc, None, state=state)


def fail_chain(
    app: Celeriac,
    steps: Sequence[Any] | None,
    exc: BaseException,
    traceback_text: str | None,
    state: str = states.FAILURE,
) -> None:
    """Store *exc* under the id of every chain step that will never run (Celery's rule)."""
    for step in steps or []:
        try:
            fail_signature(app, maybe_signature(step, app=app), exc, traceback_text, state, False)
        except Exception:
            logger.exception("could not record the failure of chain step %r", step)


def fail_signature(
    app: Celeriac,
    sig: Signature,
    exc: BaseException,
    traceback_text: str | None,
    state: str = states.FAILURE,
    call_errbacks_too: bool = True,
) -> None:
    """Fail every task a signature would have run: each waiter gets *exc*, an enclosing
    chord counts it, and what follows it fails too."""
    if isinstance(sig, (group, chain, chord)):
        _fail_canvas(app, sig, exc, traceback_text, state, call_errbacks_too)
        return
    task_id = sig.id
    options = sig.options
    if task_id:
        meta = build_meta(
            task_id,
            state,
            encode_exception(exc),
            traceback=traceback_text,
            group_id=options.get("group_id"),
        )
        app.backend.store(task_id, meta, _expires_s(app))
    root_id = options.get("root_id") or task_id or ""
    if task_id:
        origin = Origin(
            task_id,
            root_id,
            options.get("group_id"),
            options.get("group_index"),
            options.get("chord"),
        )
        return_chord_part(app, origin, state, encode_exception(exc))
    errbacks = options.get("link_error") or []
    if call_errbacks_too and errbacks and task_id:
        request = Request(
            id=task_id, task=sig.task, args=list(sig.args), kwargs=sig.kwargs, called_directly=False
        )
        call_errbacks(app, errbacks, request, exc, traceback_text, Origin(task_id, root_id))
    fail_chain(app, options.get("chain"), exc, traceback_text, state)


def _fail_canvas(
    app: Celeriac,
    sig: group | chain | chord,
    exc: BaseException,
    traceback_text: str | None,
    state: str,
    call_errbacks_too: bool,
) -> None:
    """``fail_signature`` for a group, chain or chord. A group's members each get its own
    errbacks too, and the header's own error (Celery's rule for a group body); a chain or
    chord calls its own errbacks once, under its result's id."""
    own = list(_as_list(sig.options.get("link_error"))) if call_errbacks_too else []
    if isinstance(sig, group):
        member_exc = exc.__cause__ if isinstance(exc, ChordError) and exc.__cause__ else exc
        for member in sig.tasks:
            if own:
                member = member.clone()
                for errback in own:
                    member.link_error(errback)
            fail_signature(app, member, member_exc, traceback_text, state, call_errbacks_too)
        return
    if isinstance(sig, chain):
        for step in sig.tasks:
            fail_signature(app, step, exc, traceback_text, state, call_errbacks_too)
    else:
        for member in sig.tasks:
            fail_signature(app, member, exc, traceback_text, state, False)
        if sig.body is not None:
            fail_signature(app, sig.body, exc, traceback_text, state, call_errbacks_too)
    result_id = sig.id or (sig.tasks[-1].id if isinstance(sig, chain) and sig.tasks else None)
    if own and result_id:
        request = Request(id=result_id, task=sig.task, called_directly=False)
        root_id = sig.options.get("root_id") or result_id
        call_errbacks(app, own, request, exc, traceback_text, Origin(result_id, root_id))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def call_errbacks(
    app: Celeriac,
    errbacks: Sequence[Any],
    request: Request,
    exc: BaseException,
    traceback_text: str | None,
    origin: Origin,
) -> None:
    """Celery's rule: an errback whose function takes more than one argument is called
    here with ``(request, exc, traceback)``; the others are sent, as one group, with the
    failed task's id in front of their args."""
    to_send: list[Signature] = []
    for errback in errbacks:
        sig = maybe_signature(errback, app=app)
        task = app.tasks.get(sig.task)
        if task is None or not _takes_request(sig, task):
            to_send.append(sig)
            continue
        try:
            sig(request, exc, traceback_text)
        except Exception:
            logger.exception("errback %s of task %s raised", sig.task, origin.task_id)
    if to_send:
        try:
            group(to_send, app=app).apply_async(
                (origin.task_id,),
                parent_id=origin.task_id,
                root_id=origin.root_id,
                add_to_parent=False,
            )
        except Exception:
            logger.exception("could not send the errbacks of task %s", origin.task_id)


def _takes_request(sig: Signature, task: Task) -> bool:
    if task.bind:  # Celery sends bound errbacks as tasks
        return False
    function = task.run
    target: Any = function
    if not sig.immutable and (sig.args or sig.kwargs):
        target = functools.partial(function, *sig.args, **sig.kwargs)
    try:
        spec = inspect.getfullargspec(target)
    except (TypeError, ValueError):
        return False
    return bool(spec.varargs) or len(spec.args) > 1


# chords
def return_chord_part(app: Celeriac, origin: Origin, state: str, result: Any) -> None:
    """Record a header part; if this caller now holds the chord, finish it."""
    if not origin.chord or not origin.group_id:
        return
    part = ChordPart(origin.group_id, origin.task_id, origin.group_index, state, result)
    try:
        claim = app.backend.on_chord_part_return(part)
    except Exception:
        logger.exception(
            "chord %s: could not record part %s (its counter keys expire on their own)",
            origin.group_id,
            origin.task_id,
        )
        return
    if claim is None:
        return
    try:
        body = maybe_signature(origin.chord, app=app)
        _finish_chord(app, claim, part, body, origin)
    except Exception:
        logger.exception("chord %s: could not finish it", origin.group_id)


def _finish_chord(
    app: Celeriac, claim: ChordClaim, part: ChordPart, body: Signature, origin: Origin
) -> None:
    culprit = next((p for p in claim.parts if p.failed), None) if claim.complete else part
    if culprit is None:
        values = _joined_values(app, claim)
        try:
            body.apply_async(
                (values,), parent_id=origin.task_id, root_id=origin.root_id, add_to_parent=False
            )
        except Exception as exc:
            logger.exception("chord %s: could not send its body %s", claim.group_id, body.task)
            fail_signature(app, body, ChordError(f"Callback error: {exc!r}"), None)
        finally:
            app.backend.finish_chord(claim, failed=False)
        return
    cause = decode_exception(culprit.result, app)
    error = ChordError(f"Dependency {culprit.task_id} raised {cause!r}")
    error.__cause__ = cause
    logger.info("chord %s failed: %s", claim.group_id, error)
    try:
        fail_signature(app, body, error, _traceback_of(error))
    finally:
        app.backend.finish_chord(claim, failed=True)


def _joined_values(app: Celeriac, claim: ChordClaim) -> list[Any]:
    """The header's values in order; nested as the header's saved GroupResult says when the
    sender saved one (a header task whose result is a group: Celery's rule)."""
    from ..result import GroupResult

    try:
        saved = GroupResult.restore(claim.group_id, app=app)
    except Exception:
        logger.exception("chord %s: could not read its saved header", claim.group_id)
        saved = None
    if saved is None:
        return [p.result for p in claim.parts]
    by_id = {p.task_id: p.result for p in claim.parts}
    return [_value_of(app, result, by_id) for result in saved.results]


def _value_of(app: Celeriac, result: AsyncResult | GroupResult, by_id: dict[str, Any]) -> Any:
    from ..result import GroupResult

    if isinstance(result, GroupResult):
        return [_value_of(app, member, by_id) for member in result.results]
    if result.id in by_id:
        return by_id[result.id]
    meta = app.backend.get_meta(result.id) or {}
    return meta.get("result")


def _traceback_of(error: ChordError) -> str:
    return f"celery.exceptions.ChordError: {error}\n"


def _expires_s(app: Celeriac) -> float | None:
    value: Any = app.conf.result_expires
    if value is None:
        return None
    if hasattr(value, "total_seconds"):
        value = value.total_seconds()
    return float(value)
