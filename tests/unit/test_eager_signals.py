"""Signals of a task run in place (task.apply(), task_always_eager), checked against Celery.

The same receivers are connected on the real celery package and on celeriac, the same calls
are made, and the two records (signal names, their order, keyword names, state, retval
type) must be equal.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import celery  # type: ignore[import-untyped]
import celery.signals  # type: ignore[import-untyped]
import pytest

import celeriac
import celeriac.signals

NAMES = (
    "task_received",
    "task_prerun",
    "task_success",
    "task_failure",
    "task_retry",
    "task_postrun",
)

Record = list[tuple[Any, ...]]


def _app(package: str) -> Any:
    if package == "celery":
        return celery.Celery("eager_signals", broker="memory://", backend="cache+memory://")
    url = f"memory://eager-signals-{uuid.uuid4().hex}"
    return celeriac.Celery("eager_signals", broker=url, backend=url)


def _receiver(name: str, record: Record) -> Callable[..., None]:
    def receive(sender: Any = None, **kwargs: Any) -> None:
        retval = kwargs.get("retval")
        record.append(
            (
                name,
                getattr(sender, "name", sender),
                sorted(k for k in kwargs if k != "signal"),
                kwargs.get("state"),
                type(retval).__name__ if "retval" in kwargs else None,
                type(kwargs.get("exception") or kwargs.get("reason")).__name__,
                "result" in kwargs and kwargs["result"],
            )
        )

    return receive


def _run(package: str, call: Callable[[Any, dict[str, Any]], Any]) -> Record:
    """Connect a receiver to each task signal, run *call*, disconnect; what they saw."""
    signals = celery.signals if package == "celery" else celeriac.signals
    record: Record = []
    connected = [(getattr(signals, name), _receiver(name, record)) for name in NAMES]
    for signal, receiver in connected:
        signal.connect(receiver, weak=False)
    app = _app(package)

    @app.task(name="t.ok")  # type: ignore[untyped-decorator]
    def ok(x: int) -> int:
        return x * 2

    @app.task(name="t.bad")  # type: ignore[untyped-decorator]
    def bad() -> None:
        raise ValueError("bad input")

    @app.task(name="t.again", bind=True, max_retries=1)  # type: ignore[untyped-decorator]
    def again(self: Any) -> None:
        raise self.retry(countdown=0)

    try:
        try:
            call(app, {"ok": ok, "bad": bad, "again": again})
        except Exception as exc:
            record.append(("raised", type(exc).__name__))
    finally:
        for signal, receiver in connected:
            signal.disconnect(receiver)
    return record


CALLS: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
    "success": lambda app, t: t["ok"].apply((21,)),
    "failure": lambda app, t: t["bad"].apply(),
    "failure_thrown": lambda app, t: t["bad"].apply(throw=True),
    "retry_then_retries_used_up": lambda app, t: t["again"].apply(),
    "retry_thrown": lambda app, t: t["again"].apply(throw=True),
    "always_eager_delay": lambda app, t: (
        app.conf.update(task_always_eager=True),
        t["ok"].delay(5),
    ),
    "always_eager_propagates": lambda app, t: (
        app.conf.update(task_always_eager=True, task_eager_propagates=True),
        t["bad"].delay(),
    ),
}


@pytest.fixture(autouse=True)
def _no_stray_receivers() -> Iterator[None]:
    yield
    assert not any(getattr(celeriac.signals, name).receivers for name in NAMES)


@pytest.mark.parametrize("case", sorted(CALLS))
def test_eager_run_sends_the_task_signals_celery_sends(case: str) -> None:
    expected = _run("celery", CALLS[case])
    got = _run("celeriac", CALLS[case])
    assert expected  # Celery sends signals here: the comparison is not of two empty lists
    assert got == expected


def test_eager_signals_see_the_task_and_its_request() -> None:
    seen: list[tuple[str, Any, Any]] = []
    app = _app("celeriac")

    @app.task(name="t.seen", bind=True)  # type: ignore[untyped-decorator]
    def seen_task(self: Any, x: int) -> int:
        return x

    def prerun(sender: Any = None, task_id: Any = None, **kwargs: Any) -> None:
        seen.append(("prerun", task_id, sender.request.id))

    def success(sender: Any = None, **kwargs: Any) -> None:
        seen.append(("success", sender.request.id, kwargs["result"]))

    celeriac.signals.task_prerun.connect(prerun, weak=False)
    celeriac.signals.task_success.connect(success, weak=False)
    try:
        result = seen_task.apply((7,), task_id="the-id")
    finally:
        celeriac.signals.task_prerun.disconnect(prerun)
        celeriac.signals.task_success.disconnect(success)
    assert result.get() == 7
    assert seen == [("prerun", "the-id", "the-id"), ("success", "the-id", 7)]
