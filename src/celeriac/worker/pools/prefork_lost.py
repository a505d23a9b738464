"""What happens to the task of a prefork child that died: Celery's ack policy, in one place."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ... import lifecycle, states
from ...backends.base import build_meta, encode_exception
from ...errors import TaskRevokedError, TimeLimitExceeded, WorkerLostError
from ...metrics import recovery
from ..execute import result_expires_s

if TYPE_CHECKING:
    from ...app import Celeriac
    from .prefork_slots import Running


logger = logging.getLogger(__name__)


def handle_lost_task(
    app: Celeriac,
    running: Running,
    reason: str,
    killed_for: str | None,
    owner: str | None = None,
) -> None:
    """Store the failure and settle the message as Celery would.

    Hard time limit: FAILURE TimeLimitExceeded; the message is acked when
    ``task_acks_on_failure_or_timeout`` (default) else put back.
    Otherwise (SIGKILL, OOM, crash): with ``acks_late`` and ``task_reject_on_worker_lost``
    the message goes back to the queue and no failure is stored; else FAILURE WorkerLostError
    and the message is acked (an early ack may still have been waiting in the child).
    """
    conf = app.conf
    recovery.lost(running.task_name)
    if killed_for is not None:
        exc: Exception = TimeLimitExceeded(killed_for)
        requeue = running.acks_late and not conf.task_acks_on_failure_or_timeout
    else:
        exc = WorkerLostError(f"Worker exited prematurely: {reason}. Job: {running.task_id}.")
        # None (the default) counts as True: a lost acks_late task is put back, and the
        # redelivery cap (task_max_redeliveries) keeps a task that kills its worker from looping
        requeue = running.acks_late and conf.task_reject_on_worker_lost is not False
    try:
        if requeue:
            restored, dead = app.broker.restore_lost(
                [running.receipt], int(conf.task_max_redeliveries), owner
            )
            if restored:
                logger.warning(
                    "task %s[%s] put back on its queue", running.task_name, running.task_id
                )
                return
            if dead:
                logger.error(
                    "task %s[%s] moved to the dead-letter list: its worker died too often",
                    running.task_name,
                    running.task_id,
                )
        meta = build_meta(running.task_id, states.FAILURE, encode_exception(exc))
        app.backend.store(running.task_id, meta, result_expires_s(app))
        # always: an early ack is deferred to ride the next fetch, so the child may have
        # died before sending it, and the message must not come back (acking twice is a no-op)
        app.broker.ack([running.receipt])
    except Exception:
        logger.exception(
            "could not settle the lost task %s[%s]", running.task_name, running.task_id
        )


def store_terminated(
    app: Celeriac, running: Running, signum: int | None = None, hostname: str | None = None
) -> None:
    """A task stopped by ``revoke(terminate=True)``: REVOKED ["terminated"], message acked;
    then ``task_revoked`` (terminated) in the manager, where Celery sends it too."""
    try:
        meta = build_meta(
            running.task_id, states.REVOKED, encode_exception(TaskRevokedError("terminated"))
        )
        app.backend.store(running.task_id, meta, result_expires_s(app))
        app.broker.ack([running.receipt])
    except Exception:
        logger.exception("could not settle the terminated task %s", running.task_id)
    if lifecycle.task_revoked.hooks:
        stopped = lifecycle.Terminated(app, running.task_id, running.task_name, hostname)
        lifecycle.task_revoked.emit(None, stopped, True, signum, False)
