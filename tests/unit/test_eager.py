"""task.apply(), task_always_eager, task_eager_propagates and task_store_eager_result.

Each behaviour runs on the real celery package and on celeriac with the same code, so the
expectation written here is checked to be Celery's own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import celery
import pytest

import celeriac


@dataclass
class Project:
    """An app with the tasks of these tests, built with one package or the other."""

    app: Any
    package: str
    calls: list[tuple[str | None, int, bool]] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)
    tasks: dict[str, Any] = field(default_factory=dict)

    def error(self, name: str) -> type[BaseException]:
        module = celery.exceptions if self.package == "celery" else celeriac.errors
        found: type[BaseException] = getattr(module, name)
        return found


def _build(package: str) -> Project:
    if package == "celery":
        app = celery.Celery("eager", broker="memory://", backend="cache+memory://")
    else:
        url = f"memory://eager-{uuid.uuid4().hex}"
        app = celeriac.Celery("eager", broker=url, backend=url)
    project = Project(app, package)
    base = app.Task

    class Hooked(base):  # type: ignore[misc,valid-type]
        def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
            project.hooks.append("on_success")

        def on_failure(self, exc: Any, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
            project.hooks.append(f"on_failure:{type(exc).__name__}")

        def on_retry(self, exc: Any, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
            project.hooks.append("on_retry")

    @app.task(bind=True, max_retries=2, base=Hooked)
    def flaky(self: Any, failures: int) -> Any:
        project.calls.append((self.request.id, self.request.retries, self.request.is_eager))
        if self.request.retries < failures:
            raise self.retry(countdown=5)
        return ["done", self.request.retries]

    @app.task(bind=True)
    def info(self: Any, x: int) -> dict[str, Any]:
        request = self.request
        return {
            "id": request.id,
            "is_eager": request.is_eager,
            "headers": request.headers,
            "delivery_info": request.delivery_info,
            "called_directly": request.called_directly,
            "root_id": request.root_id,
            "parent_id": request.parent_id,
        }

    @app.task(base=Hooked)
    def boom() -> None:
        raise ValueError("bad input")

    @app.task(bind=True, autoretry_for=(KeyError,), max_retries=1)
    def auto(self: Any) -> None:
        project.calls.append((self.request.id, self.request.retries, self.request.is_eager))
        raise KeyError("missing")

    project.tasks = {"flaky": flaky, "info": info, "boom": boom, "auto": auto}
    _add_followers(project)
    return project


def _add_followers(project: Project) -> None:
    """Tasks that run after, or inside, the others."""
    app, info = project.app, project.tasks["info"]

    @app.task(bind=True)
    def parent(self: Any) -> Any:
        child = info.apply((1,))
        return [self.request.id, child.result["parent_id"], child.result["root_id"]]

    @app.task
    def record(value: Any) -> Any:
        project.hooks.append(f"record:{value}")
        return value

    @app.task
    def errback(task_id: str) -> None:
        project.hooks.append(f"errback:{task_id}")

    project.tasks.update(parent=parent, record=record, errback=errback)


@pytest.fixture(params=["celery", "celeriac"])
def project(request: pytest.FixtureRequest) -> Iterator[Project]:
    built = _build(request.param)
    yield built
    built.app.close()


def test_apply_returns_a_finished_eager_result(project: Project) -> None:
    result = project.tasks["info"].apply((1,), task_id="the-id")
    assert type(result).__name__ == "EagerResult"
    assert (result.id, result.state, result.ready(), result.successful()) == (
        "the-id",
        "SUCCESS",
        True,
        True,
    )
    assert result.get() == result.result


def test_request_of_an_applied_task(project: Project) -> None:
    value = project.tasks["info"].apply((1,), task_id="X", headers={"h": 1}, priority=3).result
    assert value == {
        "id": "X",
        "is_eager": True,
        "headers": {"h": 1},
        "delivery_info": {"is_eager": True, "exchange": None, "routing_key": None, "priority": 3},
        "called_directly": False,
        "root_id": "X",
        "parent_id": None,
    }


def test_task_applied_inside_a_task_has_it_as_parent_and_root(project: Project) -> None:
    own_id, parent_id, root_id = project.tasks["parent"].apply(task_id="P").result
    assert (own_id, parent_id, root_id) == ("P", "P", "P")


def test_retry_runs_again_at_once_with_the_same_id(project: Project) -> None:
    result = project.tasks["flaky"].apply((1,), task_id="T1")
    assert (result.state, result.result) == ("SUCCESS", ["done", 1])
    assert project.calls == [("T1", 0, True), ("T1", 1, True)]
    assert project.hooks == ["on_retry", "on_success"]


def test_retries_used_up_give_a_failed_result(project: Project) -> None:
    result = project.tasks["flaky"].apply((5,))
    assert result.state == "FAILURE"
    assert isinstance(result.result, project.error("MaxRetriesExceededError"))
    assert [retries for _, retries, _ in project.calls] == [0, 1, 2]


def test_retry_with_throw_raises_retry(project: Project) -> None:
    with pytest.raises(project.error("Retry")):
        project.tasks["flaky"].apply((1,), throw=True)


def test_autoretry_for_retries_eagerly_then_fails_with_the_error(project: Project) -> None:
    result = project.tasks["auto"].apply()
    assert result.state == "FAILURE"
    assert isinstance(result.result, KeyError)
    assert [retries for _, retries, _ in project.calls] == [0, 1]


def test_failure_is_kept_in_the_result_with_its_traceback(project: Project) -> None:
    result = project.tasks["boom"].apply()
    assert (result.state, result.failed(), repr(result.result)) == (
        "FAILURE",
        True,
        "ValueError('bad input')",
    )
    assert "ValueError: bad input" in result.traceback
    assert project.hooks == ["on_failure:ValueError"]
    with pytest.raises(ValueError, match="bad input"):
        result.get()
    assert isinstance(result.get(propagate=False), ValueError)


def test_throw_raises_the_tasks_own_exception(project: Project) -> None:
    with pytest.raises(ValueError, match="bad input"):
        project.tasks["boom"].apply(throw=True)


def test_task_eager_propagates_raises_unless_throw_is_false(project: Project) -> None:
    project.app.conf.task_eager_propagates = True
    with pytest.raises(ValueError, match="bad input"):
        project.tasks["boom"].apply()
    assert project.tasks["boom"].apply(throw=False).state == "FAILURE"


def test_always_eager_runs_delay_here_and_returns_an_eager_result(project: Project) -> None:
    project.app.conf.task_always_eager = True
    result = project.tasks["info"].delay(2)
    assert type(result).__name__ == "EagerResult"
    assert result.get()["is_eager"] is True
    assert result.get()["id"] == result.id


def test_always_eager_apply_async_keeps_task_id_and_headers(project: Project) -> None:
    project.app.conf.task_always_eager = True
    result = project.tasks["info"].apply_async((2,), task_id="Y", headers={"a": 1})
    assert (result.id, result.result["headers"]) == ("Y", {"a": 1})


def test_always_eager_failure_returns_a_failed_result(project: Project) -> None:
    project.app.conf.task_always_eager = True
    assert project.tasks["boom"].delay().state == "FAILURE"


def test_always_eager_with_eager_propagates_raises_at_delay(project: Project) -> None:
    project.app.conf.task_always_eager = True
    project.app.conf.task_eager_propagates = True
    with pytest.raises(ValueError, match="bad input"):
        project.tasks["boom"].delay()


def test_always_eager_runs_link_callbacks_with_the_result(project: Project) -> None:
    project.app.conf.task_always_eager = True
    record = project.tasks["record"]
    project.tasks["info"].apply_async((1,), task_id="L", link=[record.s(), record.s()])
    assert len(project.hooks) == 2
    assert all(hook.startswith("record:{") for hook in project.hooks)


def test_apply_without_always_eager_sends_link_callbacks_instead_of_running_them(
    project: Project,
) -> None:
    project.tasks["info"].apply((1,), link=project.tasks["record"].s())
    assert project.hooks == []


def test_always_eager_failure_applies_link_error_with_the_task_id(project: Project) -> None:
    project.app.conf.task_always_eager = True
    result = project.tasks["boom"].apply_async(task_id="E", link_error=project.tasks["errback"].s())
    assert result.state == "FAILURE"
    assert project.hooks == ["errback:E", "on_failure:ValueError"]  # Celery's order


# celeriac only: what the celery package reads at task creation we read at the call
def test_store_eager_result_keeps_the_result_in_the_backend(app: celeriac.Celery) -> None:
    app.conf.task_always_eager = True
    app.conf.task_store_eager_result = True

    @app.task
    def double(x: int) -> int:
        return 2 * x

    result = double.delay(21)
    assert app.AsyncResult(result.id).get(timeout=1) == 42


def test_eager_results_are_not_stored_by_default(app: celeriac.Celery) -> None:
    @app.task
    def double(x: int) -> int:
        return 2 * x

    result = double.apply((21,))
    assert app.AsyncResult(result.id).state == "PENDING"


def test_store_eager_result_task_option(app: celeriac.Celery) -> None:
    @app.task(store_eager_result=True)
    def double(x: int) -> int:
        return 2 * x

    result = double.apply((4,))
    assert app.AsyncResult(result.id).get(timeout=1) == 8
