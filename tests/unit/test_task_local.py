"""Running a task in this process: a plain call, ``apply()`` and its EagerResult."""

from __future__ import annotations

from typing import Any

import pytest

from celeriac import Celery, EagerResult, Task, states


class Boom(Exception):
    pass


@pytest.fixture
def tasks(app: Celery) -> dict[str, Task]:
    @app.task(name="local.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="local.boom")
    def boom(message: str) -> None:
        raise Boom(message, 42)

    @app.task(name="local.whoami", bind=True)
    def whoami(self: Task) -> dict[str, Any]:
        request = self.request
        return {
            "name": self.name,
            "id": request.id,
            "is_eager": request.is_eager,
            "called_directly": request.called_directly,
        }

    attempts: list[int] = []

    @app.task(name="local.flaky", bind=True, max_retries=3)
    def flaky(self: Task) -> int:
        attempts.append(self.request.retries)
        if len(attempts) < 3:
            raise self.retry(countdown=60)
        return len(attempts)

    @app.task(name="local.coro")
    async def coro(x: int) -> int:
        return x * 2

    return {"add": add, "boom": boom, "whoami": whoami, "flaky": flaky, "coro": coro}


def test_calling_a_task_runs_the_function_here(tasks: dict[str, Task]) -> None:
    assert tasks["add"](2, 3) == 5


def test_calling_a_bound_task_passes_the_task_as_self(tasks: dict[str, Task]) -> None:
    assert tasks["whoami"]()["name"] == "local.whoami"


def test_calling_a_task_directly_marks_the_request_called_directly(
    tasks: dict[str, Task],
) -> None:
    assert tasks["whoami"]()["called_directly"] is True


def test_calling_a_task_sends_nothing(app: Celery, tasks: dict[str, Task]) -> None:
    tasks["add"](2, 3)
    assert app.broker.queue_length("celery") == 0


def test_apply_returns_an_eager_result_with_the_value(tasks: dict[str, Task]) -> None:
    result = tasks["add"].apply((2, 3))
    assert isinstance(result, EagerResult)
    assert result.get() == 5


def test_apply_result_is_successful_and_ready(tasks: dict[str, Task]) -> None:
    result = tasks["add"].apply((2, 3))
    assert (result.state, result.ready(), result.successful(), result.failed()) == (
        states.SUCCESS,
        True,
        True,
        False,
    )


def test_apply_takes_keyword_arguments(tasks: dict[str, Task]) -> None:
    assert tasks["add"].apply(kwargs={"x": 1, "y": 2}).get() == 3


def test_apply_uses_the_given_task_id(tasks: dict[str, Task]) -> None:
    assert tasks["add"].apply((1, 2), task_id="fixed-id").id == "fixed-id"


def test_apply_sets_an_eager_request_with_the_result_id(tasks: dict[str, Task]) -> None:
    result = tasks["whoami"].apply()
    seen = result.get()
    assert (seen["id"], seen["is_eager"], seen["called_directly"]) == (result.id, True, False)


def test_apply_of_a_failing_task_returns_a_failed_result(tasks: dict[str, Task]) -> None:
    result = tasks["boom"].apply(("bad",))
    assert (result.state, result.failed()) == (states.FAILURE, True)


def test_eager_result_get_raises_the_tasks_exception_type_and_args(
    tasks: dict[str, Task],
) -> None:
    result = tasks["boom"].apply(("bad",))
    with pytest.raises(Boom) as caught:
        result.get()
    assert caught.value.args == ("bad", 42)


def test_eager_result_get_without_propagate_returns_the_exception(tasks: dict[str, Task]) -> None:
    value = tasks["boom"].apply(("bad",)).get(propagate=False)
    assert isinstance(value, Boom)


def test_eager_result_of_a_failure_keeps_the_traceback(tasks: dict[str, Task]) -> None:
    result = tasks["boom"].apply(("bad",))
    assert result.traceback is not None
    assert "Boom: ('bad', 42)" in result.traceback


def test_apply_with_throw_raises_the_exception_at_once(tasks: dict[str, Task]) -> None:
    with pytest.raises(Boom):
        tasks["boom"].apply(("bad",), throw=True)


def test_task_eager_propagates_makes_apply_raise(app: Celery, tasks: dict[str, Task]) -> None:
    app.conf.task_eager_propagates = True
    with pytest.raises(Boom):
        tasks["boom"].apply(("bad",))


def test_apply_runs_retries_again_at_once(tasks: dict[str, Task]) -> None:
    assert tasks["flaky"].apply().get() == 3


def test_apply_of_an_async_task_runs_the_coroutine(tasks: dict[str, Task]) -> None:
    assert tasks["coro"].apply((21,)).get() == 42


def test_task_always_eager_makes_delay_return_an_eager_result(
    app: Celery, tasks: dict[str, Task]
) -> None:
    app.conf.task_always_eager = True
    result = tasks["add"].delay(2, 3)
    assert isinstance(result, EagerResult)
    assert result.get() == 5


def test_task_always_eager_sends_nothing_to_the_broker(app: Celery, tasks: dict[str, Task]) -> None:
    app.conf.task_always_eager = True
    tasks["add"].delay(2, 3)
    assert app.broker.queue_length("celery") == 0


def test_eager_result_forget_keeps_the_value(tasks: dict[str, Task]) -> None:
    result = tasks["add"].apply((2, 3))
    result.forget()
    assert result.get() == 5


def test_delay_with_arguments_that_do_not_fit_raises_type_error_at_once(
    app: Celery, tasks: dict[str, Task]
) -> None:
    with pytest.raises(TypeError, match=r"local\.add"):
        tasks["add"].delay(1, 2, 3)
    assert app.broker.queue_length("celery") == 0


def test_delay_sends_to_the_broker_and_returns_a_pending_result(
    app: Celery, tasks: dict[str, Task]
) -> None:
    result = tasks["add"].delay(2, 3)
    assert (result.state, app.broker.queue_length("celery")) == (states.PENDING, 1)


def test_result_from_a_memory_backend_wakes_the_waiter(app: Celery) -> None:
    from celeriac.backends import build_meta

    app.backend.store("stored-id", build_meta("stored-id", states.SUCCESS, [1, "é"]), None)
    assert app.AsyncResult("stored-id").get(timeout=1) == [1, "é"]
