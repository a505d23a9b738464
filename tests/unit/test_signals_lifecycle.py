"""Celery's signals as a view of the task lifecycle, run through the worker's own execute path
on the in-process ``memory://`` broker and backend."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from celeriac import Celery, lifecycle, signals
from celeriac.brokers.base import Delivery
from celeriac.worker import execute, log_lines
from celeriac.worker.execute import ExecContext
from celeriac.worker.place import worker_place
from tests.unit.helpers import take_envelopes


class Recorder:
    """Connects to signals and records each call's sender, keyword arguments and thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []
        self._connected: list[tuple[signals.Signal, Any]] = []

    def listen(self, *sigs: signals.Signal) -> None:
        for sig in sigs:

            def receiver(sender: Any = None, _name: str = sig.name, **kwargs: Any) -> None:
                kwargs.pop("signal", None)
                kwargs["thread"] = threading.get_ident()
                self.calls.append((_name, sender, kwargs))

            sig.connect(receiver, weak=False)
            self._connected.append((sig, receiver))

    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]

    def one(self, name: str) -> tuple[Any, dict[str, Any]]:
        found = [(sender, kwargs) for n, sender, kwargs in self.calls if n == name]
        assert len(found) == 1, (name, self.names())
        return found[0]

    def close(self) -> None:
        for sig, receiver in self._connected:
            sig.disconnect(receiver)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    rec.close()


@pytest.fixture
def tasks(app: Celery) -> dict[str, Any]:
    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="t.boom")
    def boom() -> None:
        raise ValueError("boom")

    @app.task(name="t.again", bind=True, max_retries=3)
    def again(self: Any) -> None:
        raise self.retry(countdown=60, exc=KeyError("later"))

    @app.task(name="t.whoami", bind=True)
    def whoami(self: Any) -> str:
        return str(self.request.id)

    return {"add": add, "boom": boom, "again": again, "whoami": whoami}


def run_one(app: Celery, queue: str = "celery") -> Delivery:
    """Take the next message and run it through the worker's execute path, in this thread."""
    (delivery,) = app.broker.fetch([queue], 1, 0.0)
    ctx = ExecContext(app=app, nodename="w1@test", place_base=worker_place("w1@test", "solo"))
    ctx.consumer = "the-consumer"
    execute.handle(ctx, delivery)
    return delivery


# the lifecycle points
def test_point_without_hooks_is_falsy_and_calls_nothing() -> None:
    point = lifecycle.Point("p")
    assert not point.hooks
    point.emit(1)  # nothing to call


def test_point_hook_that_raises_is_logged_and_the_next_hook_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    point = lifecycle.Point("p")
    seen: list[int] = []

    def bad(value: int) -> None:
        raise RuntimeError("view broke")

    point.subscribe(bad)
    point.subscribe(seen.append)
    with caplog.at_level(logging.ERROR, logger="celeriac.lifecycle"):
        point.emit(7)
    assert seen == [7]
    assert "view broke" in caplog.text


def test_signal_view_subscribes_only_while_a_receiver_is_connected() -> None:
    assert not lifecycle.task_started.hooks

    def receiver(**kwargs: Any) -> None:
        pass

    signals.task_prerun.connect(receiver)
    try:
        assert lifecycle.task_started.hooks
    finally:
        signals.task_prerun.disconnect(receiver)
    assert not lifecycle.task_started.hooks


def test_a_collected_weak_receiver_unsubscribes_the_view() -> None:
    def receiver(**kwargs: Any) -> None:
        pass

    signals.task_postrun.connect(receiver)
    assert lifecycle.task_finished.hooks
    del receiver
    import gc

    gc.collect()
    assert not lifecycle.task_finished.hooks


# publishing
def test_before_task_publish_gets_celerys_arguments_and_its_header_changes_go_on_the_wire(
    app: Celery, tasks: dict[str, Any], recorder: Recorder
) -> None:
    def stamp(headers: dict[str, Any], **kwargs: Any) -> None:
        headers["x-trace"] = "abc"

    signals.before_task_publish.connect(stamp)
    recorder.listen(signals.before_task_publish, signals.after_task_publish)
    try:
        result = tasks["add"].delay(2, 3)
    finally:
        signals.before_task_publish.disconnect(stamp)
    sender, before = recorder.one("before_task_publish")
    assert sender == "t.add"
    assert before["body"] == ([2, 3], {}, before["body"][2])
    assert before["routing_key"] == "celery"
    assert before["exchange"] == ""
    assert before["headers"]["id"] == result.id
    assert before["properties"]["correlation_id"] == result.id
    assert set(before) >= {"declare", "retry_policy"}
    sender, after = recorder.one("after_task_publish")
    assert sender == "t.add" and after["headers"]["id"] == result.id
    assert recorder.names() == ["before_task_publish", "after_task_publish"]
    (envelope,) = take_envelopes(app)
    assert envelope["headers"]["x-trace"] == "abc"
    assert envelope["headers"]["id"] == result.id


def test_publish_signals_fire_for_each_message_of_delay_many(
    app: Celery, tasks: dict[str, Any], recorder: Recorder
) -> None:
    recorder.listen(signals.after_task_publish)
    results = tasks["add"].delay_many([(1, 2), (3, 4)])
    ids = [kwargs["headers"]["id"] for _, _, kwargs in recorder.calls]
    assert ids == [r.id for r in results]
    assert len(take_envelopes(app)) == 2


# one task in the worker
def test_a_successful_task_fires_received_prerun_success_postrun_in_order(
    app: Celery, tasks: dict[str, Any], recorder: Recorder
) -> None:
    recorder.listen(
        signals.task_received, signals.task_prerun, signals.task_success, signals.task_postrun
    )
    result = tasks["add"].delay(2, 3)
    run_one(app)
    assert recorder.names() == ["task_received", "task_prerun", "task_success", "task_postrun"]
    sender, received = recorder.one("task_received")
    assert sender == "the-consumer"
    request = received["request"]
    assert (request.id, request.name, request.task, request.args) == (
        result.id,
        "t.add",
        tasks["add"],
        [2, 3],
    )
    sender, prerun = recorder.one("task_prerun")
    assert sender is tasks["add"]
    assert prerun["task_id"] == result.id and prerun["task"] is tasks["add"]
    assert prerun["args"] == [2, 3] and prerun["kwargs"] == {}
    sender, success = recorder.one("task_success")
    assert sender is tasks["add"] and success["result"] == 5
    _, postrun = recorder.one("task_postrun")
    assert postrun["retval"] == 5 and postrun["state"] == "SUCCESS"
    assert {kwargs["thread"] for _, _, kwargs in recorder.calls} == {threading.get_ident()}
    assert result.get(timeout=5) == 5


def test_task_success_receiver_sees_the_tasks_request(app: Celery, tasks: dict[str, Any]) -> None:
    seen: list[Any] = []

    def receiver(sender: Any = None, **kwargs: Any) -> None:
        seen.append(sender.request.id)

    signals.task_success.connect(receiver)
    try:
        result = tasks["whoami"].delay()
        run_one(app)
    finally:
        signals.task_success.disconnect(receiver)
    assert seen == [result.id]


def test_a_failing_task_fires_task_failure_with_celerys_arguments(
    app: Celery, tasks: dict[str, Any], recorder: Recorder
) -> None:
    recorder.listen(signals.task_failure, signals.task_postrun)
    result = tasks["boom"].delay()
    run_one(app)
    sender, failure = recorder.one("task_failure")
    assert sender is tasks["boom"]
    assert failure["task_id"] == result.id
    assert isinstance(failure["exception"], ValueError)
    assert failure["args"] == [] and failure["kwargs"] == {}
    assert failure["traceback"] is failure["exception"].__traceback__
    assert "ValueError: boom" in failure["einfo"].traceback
    _, postrun = recorder.one("task_postrun")
    assert postrun["state"] == "FAILURE" and isinstance(postrun["retval"], ValueError)


def test_a_retried_task_fires_task_retry_with_the_request_and_reason(
    app: Celery, tasks: dict[str, Any], recorder: Recorder
) -> None:
    recorder.listen(signals.task_retry)
    result = tasks["again"].delay()
    run_one(app)
    sender, retry = recorder.one("task_retry")
    assert sender is tasks["again"]
    assert retry["request"].id == result.id
    assert "later" in str(retry["reason"])
    assert retry["einfo"] is not None


def test_an_expired_task_fires_task_revoked_with_expired_true(
    app: Celery, tasks: dict[str, Any], recorder: Recorder
) -> None:
    recorder.listen(signals.task_revoked, signals.task_prerun)
    past = datetime.now(timezone.utc) - timedelta(seconds=5)
    result = tasks["add"].apply_async((1, 1), expires=past)
    run_one(app)
    sender, revoked = recorder.one("task_revoked")
    assert sender is tasks["add"]
    assert revoked["request"].id == result.id
    assert (revoked["terminated"], revoked["signum"], revoked["expired"]) == (False, None, True)
    assert "task_prerun" not in recorder.names()


def test_an_unregistered_task_fires_task_unknown(app: Celery, recorder: Recorder) -> None:
    recorder.listen(signals.task_unknown)
    result = app.send_task("no.such.task", (1,))
    run_one(app)
    sender, unknown = recorder.one("task_unknown")
    assert sender == "the-consumer"
    assert unknown["name"] == "no.such.task" and unknown["id"] == result.id
    assert unknown["exc"] is not None


def test_a_message_that_is_not_a_task_fires_task_rejected(app: Celery, recorder: Recorder) -> None:
    recorder.listen(signals.task_rejected)
    app.broker.publish("celery", b'{"not": "a task", "properties": {"delivery_tag": "t1"}}')
    delivery = run_one(app)
    sender, rejected = recorder.one("task_rejected")
    assert sender == "the-consumer"
    assert rejected["message"] is delivery and rejected["exc"] is not None


def test_a_receiver_that_raises_does_not_break_the_task(
    app: Celery, tasks: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("receiver broke")

    for sig in (signals.task_prerun, signals.task_success, signals.task_postrun):
        sig.connect(broken)
    try:
        result = tasks["add"].delay(20, 22)
        with caplog.at_level(logging.ERROR):
            run_one(app)
    finally:
        for sig in (signals.task_prerun, signals.task_success, signals.task_postrun):
            sig.disconnect(broken)
    assert result.get(timeout=5) == 42
    broke = [r for r in caplog.records if r.exc_info and "receiver broke" in str(r.exc_info[1])]
    assert len(broke) == 3


def test_a_failure_in_the_workers_own_code_fires_task_internal_error(
    app: Celery, tasks: dict[str, Any], recorder: Recorder
) -> None:
    recorder.listen(signals.task_internal_error)
    result = tasks["add"].delay(1, 2)
    (delivery,) = app.broker.fetch(["celery"], 1, 0.0)
    ctx = ExecContext(app=app, nodename="w1@test", place_base=worker_place("w1@test", "solo"))

    def broken_hook(job: Any) -> None:
        raise RuntimeError("worker bug")

    ctx.on_task_start = broken_hook
    execute.handle(ctx, delivery)  # logged, not raised
    sender, error = recorder.one("task_internal_error")
    assert sender is tasks["add"]
    assert error["task_id"] == result.id and error["args"] == [1, 2]
    assert isinstance(error["exception"], RuntimeError)
    assert "worker bug" in error["einfo"].traceback


# the log-lines view
def test_short_repr_keeps_big_return_values_short() -> None:
    text = log_lines.short_repr(list(range(100_000)), maxsize=50)
    assert len(text) <= 50 and text.startswith("[0, 1, 2")
    long_text = log_lines.short_repr("x" * 5000)
    assert len(long_text) <= 1024 and "..." in long_text
    assert log_lines.short_repr(5) == "5"


def test_log_lines_are_celerys_received_succeeded_and_failed_lines(
    app: Celery, tasks: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="celeriac.worker.log_lines"):
        log_lines.install()
        ok = tasks["add"].delay(2, 3)
        bad = tasks["boom"].delay()
        run_one(app)
        run_one(app)
    lines = [r.getMessage() for r in caplog.records if r.name == "celeriac.worker.log_lines"]
    assert lines[0] == f"Task t.add[{ok.id}] received"
    assert lines[1].startswith(f"Task t.add[{ok.id}] succeeded in ")
    assert lines[1].endswith("s: 5")
    assert lines[2] == f"Task t.boom[{bad.id}] received"
    assert lines[3] == f"Task t.boom[{bad.id}] raised unexpected: ValueError('boom')"
    failed = next(r for r in caplog.records if r.getMessage() == lines[3])
    assert failed.levelno == logging.ERROR and failed.exc_info is not None
