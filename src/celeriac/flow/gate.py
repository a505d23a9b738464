"""The worker's one flow check, between accepting a message and beginning it.

``admit`` answers: run it now, or it was parked broker-side (``broker.defer``, as countdown
tasks are) until its reserved token or a free slot, with ``RECEIVED`` and ``parked_until``
stored so a user sees why it waits. ``finished`` gives back the slot and the unique lock.
Nothing limited stays in worker memory and no slot is taken while it waits.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .. import states
from ..backends.base import build_meta
from ..errors import ImproperlyConfigured
from .limits import FlowSpec
from .runtime import flow_of, lease_ttl_s
from .store_base import CAP_RECHECK_S

if TYPE_CHECKING:
    from ..task import Task
    from ..worker.execute import ExecContext, Job

logger = logging.getLogger(__name__)


class KeyFailed(ImproperlyConfigured):
    """A task's key callable or template failed on this call's arguments."""


@dataclass(frozen=True)
class Held:
    """What a running job holds, to give back when it ends."""

    slots: str | None
    unique_lock: str | None
    owner: str


def spec(ctx: ExecContext, task: Task) -> FlowSpec | None:
    return flow_of(ctx.app).spec(task)


def admit(ctx: ExecContext, job: Job, flow: FlowSpec) -> bool:
    """True: run it now (what it holds is on ``job.flow_held``). False: parked."""
    message = job.message
    app = ctx.app
    store = flow_of(app).store
    now = time.time()
    key = _key(flow, "rate_limit_key", flow.rate_key, message.args, message.kwargs)
    if flow.rate_per_s and not app.conf.worker_disable_rate_limits:
        at = _token_time(ctx, job, flow.rate_per_s, flow, key, now)
        if at > 0:
            _park(ctx, job, at)
            return False
    owner = str(app.broker.owner)
    slots = None
    if flow.max_concurrency:
        slots = flow.task_name if key is None else f"{flow.task_name}#{key}"
        ttl_s = lease_ttl_s(app)
        if not store.acquire(slots, message.id, owner, flow.max_concurrency, ttl_s, now):
            until = now + CAP_RECHECK_S
            _park(ctx, job, until)
            store.wait_for_slot(
                slots, flow.max_concurrency, job.delivery, flow.task_name, message.id, now
            )
            return False
        store.unparked(flow.task_name, message.id)
    lock = None
    if flow.unique_for_s:
        lock = unique_lock(flow, message.args, message.kwargs)
        store.hold_unique(lock, message.id, owner, lease_ttl_s(app))
    job.flow_held = Held(slots, lock, owner)
    return True


def _token_time(
    ctx: ExecContext, job: Job, per_s: float, flow: FlowSpec, key: str | None, now: float
) -> float:
    """0.0 to run now, else when to come back (its reserved token, or room in the bucket)."""
    scope = "" if flow.rate_scope == "global" else f"@{ctx.nodename}"
    # the rate is part of the bucket: a rate_limit command's new rate starts afresh rather
    # than behind the old rate's reservations
    bucket = f"{flow.task_name}{scope}/{per_s:g}" + ("" if key is None else f"#{key}")
    interval_s = 1.0 / per_s
    # a worker's own bucket reserves a prefetch's worth ahead, no more (see take)
    horizon_s = max(1.0, 4 * interval_s) if scope else None
    at = flow_of(ctx.app).store.take(
        bucket, job.message.id, flow.task_name, interval_s, now, horizon_s
    )
    if at < 0 and horizon_s is not None:  # unreserved: back when there is room, spread
        at = -at + random.uniform(0.0, horizon_s)  # so they do not all come back at once
    return at


def finished(ctx: ExecContext, job: Job, state: str) -> None:
    """The job ended (or is retried): give back its slot; its unique lock unless retried."""
    held: Held | None = getattr(job, "flow_held", None)
    if held is None:
        return
    store = flow_of(ctx.app).store
    try:
        woke = held.slots is not None and store.release(
            held.slots, job.message.id, held.owner, time.time()
        )
        if woke:
            ctx.app.broker.promote_due(time.time())  # the woken waiter: queue it now
        if held.unique_lock is not None and state != states.RETRY:
            store.release_unique(held.unique_lock, job.message.id, held.owner)
    except Exception:  # the lease lapses on its own; never fail the task for this
        logger.exception(
            "task %s[%s]: could not give back its flow slot or lock",
            job.message.task,
            job.message.id,
        )
    job.flow_held = None


def dropped(ctx: ExecContext, task: Task, args: Any, kwargs: Any, task_id: str) -> None:
    """A task that will never run (revoked, expired): free its unique lock."""
    try:
        flow = spec(ctx, task)
        if flow is None or not flow.unique_for_s:
            return
        lock = unique_lock(flow, args, kwargs)
        flow_of(ctx.app).store.release_unique(lock, task_id, str(ctx.app.broker.owner))
    except Exception:
        logger.exception("task %s[%s]: could not free its unique lock", task.name, task_id)


def unique_lock(flow: FlowSpec, args: Any, kwargs: Any) -> str:
    key = _key(flow, "unique_key", flow.unique_key, args, kwargs)
    return flow.task_name if key is None else f"{flow.task_name}#{key}"


def _key(flow: FlowSpec, option: str, fn: Any, args: Any, kwargs: Any) -> str | None:
    if fn is None:
        return None
    try:
        return str(fn(args, kwargs))
    except Exception as exc:
        raise KeyFailed(
            f"{option} of task {flow.task_name!r} failed on this call's arguments: "
            f"{type(exc).__name__}: {exc}; fix the key (a template names kwargs every call "
            f"passes) or the call"
        ) from exc


def _park(ctx: ExecContext, job: Job, until_s: float) -> None:
    message = job.message
    logger.debug(
        "task %s[%s] over its flow limit; parked broker-side until %.3f",
        message.task,
        message.id,
        until_s,
    )
    ctx.app.broker.defer(job.delivery, until_s)
    if ctx.on_defer is not None:
        ctx.on_defer(until_s)
    if message.headers.get("ignore_result") or job.task.ignore_result:
        return
    meta: dict[str, Any] = build_meta(
        message.id,
        states.RECEIVED,
        None,
        group_id=message.headers.get("group"),
        parent_id=message.headers.get("parent_id"),
    )
    meta["parked_until"] = datetime.fromtimestamp(until_s, timezone.utc).isoformat()
    try:
        expires = ctx.app.conf.result_expires
        seconds = getattr(expires, "total_seconds", None)
        ctx.app.backend.store(
            message.id, meta, float(seconds() if seconds else expires) if expires else None
        )
    except Exception:
        logger.exception("could not store RECEIVED (parked) of task %s", message.id)
