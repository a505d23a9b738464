"""Result meta in Celery's layout, and AsyncResult reading it from the memory:// backend."""

from __future__ import annotations

import builtins
from datetime import datetime, timedelta
from typing import Any

import pytest

from celeriac import AsyncResult, Celery, TaskRevokedError, states
from celeriac.backends import build_meta, encode_exception
from celeriac.errors import TimeoutError


def store(app: Celery, task_id: str, state: str, result: Any, **extra: Any) -> None:
    app.backend.store(task_id, build_meta(task_id, state, result, **extra), None)


def test_meta_keys_are_in_celerys_order() -> None:
    meta = build_meta("id-1", states.SUCCESS, 5, group_id="g", parent_id="p", place={"pid": 1})
    assert list(meta) == [
        "status",
        "result",
        "traceback",
        "children",
        "date_done",
        "group_id",
        "parent_id",
        "task_id",
        "place",
    ]


def test_meta_leaves_out_group_and_parent_when_unset() -> None:
    assert "group_id" not in build_meta("id-1", states.SUCCESS, 5)
    assert "parent_id" not in build_meta("id-1", states.SUCCESS, 5)


@pytest.mark.parametrize("state", sorted(states.READY_STATES))
def test_ready_meta_has_date_done_in_iso_with_utc_offset(state: str) -> None:
    date_done = build_meta("id-1", state, None)["date_done"]
    assert datetime.fromisoformat(date_done).utcoffset() == timedelta(0)
    assert date_done.endswith("+00:00")


@pytest.mark.parametrize("state", [states.STARTED, states.RETRY, states.PENDING])
def test_unready_meta_has_no_date_done(state: str) -> None:
    assert build_meta("id-1", state, None)["date_done"] is None


def test_meta_children_default_to_an_empty_list() -> None:
    assert build_meta("id-1", states.SUCCESS, 5)["children"] == []


def test_unknown_task_id_is_pending(app: Celery) -> None:
    result = app.AsyncResult("never-sent")
    assert (result.state, result.result, result.ready()) == (states.PENDING, None, False)


def test_get_of_a_task_never_run_times_out_with_a_hint(app: Celery) -> None:
    with pytest.raises(TimeoutError, match="worker"):
        app.AsyncResult("never-sent").get(timeout=0.05)


def test_timeout_error_is_also_the_builtin_timeout_error(app: Celery) -> None:
    with pytest.raises(builtins.TimeoutError):
        app.AsyncResult("never-sent").get(timeout=0.05)


def test_stored_success_is_returned_by_get(app: Celery) -> None:
    store(app, "id-1", states.SUCCESS, {"a": [1, "é"]})
    assert app.AsyncResult("id-1").get(timeout=1) == {"a": [1, "é"]}


def test_stored_failure_is_raised_by_get(app: Celery) -> None:
    store(app, "id-1", states.FAILURE, encode_exception(KeyError("k")))
    with pytest.raises(KeyError):
        app.AsyncResult("id-1").get(timeout=1)


def test_failure_result_property_is_the_exception(app: Celery) -> None:
    store(app, "id-1", states.FAILURE, encode_exception(KeyError("k")))
    assert isinstance(app.AsyncResult("id-1").result, KeyError)


def test_revoked_task_get_raises_task_revoked_error(app: Celery) -> None:
    store(app, "id-1", states.REVOKED, encode_exception(TaskRevokedError("expired")))
    with pytest.raises(Exception, match="expired") as caught:
        app.AsyncResult("id-1").get(timeout=1)
    assert type(caught.value).__name__ == TaskRevokedError.__name__


def test_started_state_is_reported_but_not_ready(app: Celery) -> None:
    store(app, "id-1", states.STARTED, {"pid": 1, "hostname": "w@h"})
    result = app.AsyncResult("id-1")
    assert (result.state, result.ready()) == (states.STARTED, False)


def test_place_of_a_result_is_read_from_the_meta(app: Celery) -> None:
    store(app, "id-1", states.SUCCESS, 5, place={"pid": 42, "pool": "solo"})
    assert app.AsyncResult("id-1").place == {"pid": 42, "pool": "solo"}


def test_date_done_is_an_aware_datetime(app: Celery) -> None:
    store(app, "id-1", states.SUCCESS, 5)
    date_done = app.AsyncResult("id-1").date_done
    assert date_done is not None and date_done.utcoffset() == timedelta(0)


def test_forget_makes_the_result_pending_again(app: Celery) -> None:
    store(app, "id-1", states.SUCCESS, 5)
    result = app.AsyncResult("id-1")
    result.get(timeout=1)
    result.forget()
    assert result.state == states.PENDING


def test_result_equals_its_id_and_hashes_like_it(app: Celery) -> None:
    result = app.AsyncResult("id-1")
    assert result == "id-1" and result == AsyncResult("id-1", app=app)
    assert len({result, AsyncResult("id-1", app=app)}) == 1


def test_result_needs_a_task_id(app: Celery) -> None:
    with pytest.raises(ValueError, match="task id"):
        AsyncResult("", app=app)
