"""Class-based tasks, pydantic tasks, retry arguments, results stored as references and
custom remote-control commands, without a server."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from celeriac import Celery, Task
from celeriac.backends.base import build_meta, decode_exception, encode_exception
from celeriac.errors import ImproperlyConfigured, RemoteTaskError
from celeriac.result import AsyncResult, GroupResult
from celeriac.task import Request, _retry_arguments
from celeriac.worker import control_commands
from celeriac.worker.control import ControlState, control_command, inspect_command
from tests.unit.helpers import decoded_body, take_envelopes


# class-based tasks
class Multiply(Task):
    name = "unit.multiply"

    def run(self, x: int, y: int) -> int:
        return x * y


class Unnamed(Task):
    def run(self) -> str:
        return "ran"


def test_class_based_task_is_made_with_no_arguments_and_called_directly() -> None:
    task = Multiply()
    assert task(6, 7) == 42
    assert task.run(2, 3) == 6


def test_register_task_binds_the_app_and_sends_by_the_class_name(app: Celery) -> None:
    task = app.register_task(Multiply())
    assert app.tasks["unit.multiply"] is task
    assert task.app is app
    task.delay(2, 3)
    [envelope] = take_envelopes(app)
    assert envelope["headers"]["task"] == "unit.multiply"
    assert decoded_body(envelope)[0] == [2, 3]


def test_register_task_names_an_unnamed_class_after_its_module_and_class(app: Celery) -> None:
    task = app.register_task(Unnamed)
    assert task.name == f"{__name__}.Unnamed"
    assert app.tasks[task.name]() == "ran"


def test_class_based_task_checks_arguments_against_its_run_method(app: Celery) -> None:
    task = app.register_task(Multiply())
    with pytest.raises(TypeError, match="do not fit"):
        task.delay(1, 2, 3)


def test_task_class_without_run_says_what_to_define() -> None:
    class NoBody(Task):
        name = "unit.nobody"

    with pytest.raises(TypeError, match="no run method; define run"):
        NoBody()


def test_class_based_task_runs_eagerly_with_its_class_options(app: Celery) -> None:
    class Flaky(Task):
        name = "unit.flaky"
        autoretry_for = (KeyError,)
        max_retries = 2
        default_retry_delay = 0

        def run(self) -> int:
            if self.request.retries < 2:
                raise KeyError("again")
            return int(self.request.retries)

    task = app.register_task(Flaky())
    assert task.apply().get() == 2


# retry arguments (Celery's rule)
def _request(args: list[Any], kwargs: dict[str, Any]) -> Request:
    return Request(args=args, kwargs=kwargs)


def _signature_of(fun: Any) -> Any:
    import inspect

    return inspect.signature(fun)


def _xy(x: int, y: int = 0) -> None: ...


@pytest.mark.parametrize(
    ("old_args", "old_kwargs", "args", "kwargs", "expected"),
    [
        ([1, 2], {}, None, {"x": 10}, ((10, 2), {})),
        ([1], {"y": 2}, None, {"x": 10, "y": 20}, ((10,), {"y": 20})),
        ([], {"x": 1, "y": 2}, (5,), None, ((5,), {"y": 2})),
        ([], {"x": 1, "y": 2}, (5, 6), None, ((5, 6), {})),
        ([1, 2], {}, ("a",), {"k": 1}, (("a",), {"k": 1})),
        ([1, 2], {}, None, None, ((1, 2), {})),
    ],
)
def test_retry_arguments_replace_the_requests_without_clashing(
    old_args: list[Any],
    old_kwargs: dict[str, Any],
    args: Any,
    kwargs: Any,
    expected: Any,
) -> None:
    request = _request(old_args, old_kwargs)
    assert _retry_arguments(_signature_of(_xy), request, args, kwargs) == expected


# pydantic tasks
class Point(BaseModel):
    x: int
    y: int


def test_pydantic_task_validates_a_dict_and_dumps_its_model(app: Celery) -> None:
    @app.task(name="unit.shift", pydantic=True)
    def shift(point: Point, by: int) -> Point:
        assert isinstance(point, Point)
        return Point(x=point.x + by, y=point.y + by)

    assert shift.apply(({"x": 1, "y": 2}, 1)).get() == {"x": 2, "y": 3}


def test_pydantic_task_sends_a_model_argument_as_its_dump(app: Celery) -> None:
    @app.task(name="unit.shift", pydantic=True)
    def shift(point: Point, by: int) -> Point:
        return point

    shift.delay(Point(x=1, y=2), by=3)
    [envelope] = take_envelopes(app)
    assert decoded_body(envelope)[:2] == [[{"x": 1, "y": 2}], {"by": 3}]


def test_pydantic_validation_error_fails_the_call_with_pydantics_message(app: Celery) -> None:
    @app.task(name="unit.strict", pydantic=True, pydantic_strict=True)
    def strict(point: Point) -> int:
        return point.x

    result = strict.apply(({"x": "1", "y": 0},), throw=False)
    assert result.state == "FAILURE"
    with pytest.raises(ValidationError, match="valid integer"):
        strict.apply(({"x": "1", "y": 0},), throw=True)


def test_pydantic_bound_task_gets_self_and_its_model(app: Celery) -> None:
    @app.task(name="unit.bound", pydantic=True, bind=True)
    def bound(self: Task, point: Point) -> str:
        return f"{self.name}:{point.x}"

    assert bound.apply(({"x": 4, "y": 0},)).get() == "unit.bound:4"


def test_pydantic_without_the_package_says_how_to_install_it(
    app: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pydantic", None)  # what an import of a missing one does
    with pytest.raises(ImproperlyConfigured, match=r"celeriac\[pydantic\]"):

        @app.task(name="unit.needs", pydantic=True)
        def needs(point: Point) -> None: ...


def test_an_error_with_its_text_outside_args_keeps_the_text_across_the_wire() -> None:
    try:
        Point.model_validate({"x": "no"})
    except ValidationError as exc:
        encoded = encode_exception(exc)
    assert "validation error" in encoded["exc_message"][0]
    decoded = decode_exception(encoded)
    assert isinstance(decoded, RemoteTaskError)
    assert type(decoded).__name__ == "ValidationError"
    assert "valid integer" in str(decoded)


# results that are results
def test_a_result_value_that_is_a_result_is_stored_as_its_reference(app: Celery) -> None:
    child = AsyncResult("c1", app=app)
    assert build_meta("t", "SUCCESS", child)["result"] == (("c1", None), None)
    group = GroupResult("g1", [child, AsyncResult("c2", app=app)], app=app)
    stored = build_meta("t", "SUCCESS", group)["result"]
    assert stored == (("g1", None), [(("c1", None), None), (("c2", None), None)])


# custom remote-control commands
def test_control_and_inspect_commands_register_with_celerys_options(app: Celery) -> None:
    @control_command(args=[("n", int)], signature="<n>", alias="unit_bump_alias")
    def unit_bump(state: ControlState, n: int = 1) -> dict[str, str]:
        """Bump it."""
        return {"ok": f"{state.hostname} bumped {n}"}

    @inspect_command(name="unit_look")
    def look(state: ControlState) -> dict[str, Any]:
        return {"app": state.app.main}

    info = control_commands.meta["unit_bump"]
    assert (info.type, info.signature, info.args, info.help) == (
        "control",
        "<n>",
        [("n", int)],
        "Bump it.",
    )
    assert control_commands.meta["unit_look"].type == "inspect"
    state = ControlState(app, "w@host", runtime=None)  # type: ignore[arg-type]
    for name in ("unit_bump", "unit_bump_alias"):
        handler = control_commands.find(name, state)
        assert handler is not None and handler({"n": 2}) == {"ok": "w@host bumped 2"}
    look_handler = control_commands.find("unit_look", state)
    assert look_handler is not None and look_handler({}) == {"app": "unit"}
    assert control_commands.find("unit_nothing", state) is None


def test_request_has_the_rest_of_celerys_context_attributes() -> None:
    request = Request.of(id="t")
    assert (request.taskset, request.utc, request.logfile, request.loglevel) == (None,) * 4
    assert (request.get("id"), request.get("custom", "none")) == ("t", "none")
