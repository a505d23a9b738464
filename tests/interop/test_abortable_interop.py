"""``contrib.abortable`` across implementations on one Redis: an abort stored by either
side is read as aborted by the other (the ``ABORTED`` state in Celery's result form)."""

from __future__ import annotations

import uuid

import celery
from celery.contrib.abortable import AbortableAsyncResult as CeleryAbortableResult

import celeriac
from celeriac.contrib.abortable import AbortableAsyncResult


def test_celeriac_abort_is_seen_by_celerys_abortable_result(
    celeriac_client: celeriac.Celery, celery_client: celery.Celery
) -> None:
    task_id = str(uuid.uuid4())
    AbortableAsyncResult(task_id, app=celeriac_client).abort()
    theirs = CeleryAbortableResult(task_id, app=celery_client)
    assert theirs.is_aborted()
    assert theirs.state == "ABORTED"


def test_celerys_abort_is_seen_by_celeriacs_abortable_result(
    celeriac_client: celeriac.Celery, celery_client: celery.Celery
) -> None:
    task_id = str(uuid.uuid4())
    CeleryAbortableResult(task_id, app=celery_client).abort()
    ours = AbortableAsyncResult(task_id, app=celeriac_client)
    assert ours.is_aborted()
    assert ours.result is None
