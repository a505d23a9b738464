"""task_annotations in its three forms, with Celery's order of application."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from celeriac import Celery, Task
from celeriac.errors import ImproperlyConfigured


@pytest.fixture
def app(app: Celery) -> Iterator[Celery]:
    """The unit app, with its annotations dropped after the test: a later test's
    shared_task registers on every live app and must not meet them."""
    yield app
    app.conf.task_annotations = None


def _add(x: int, y: int) -> int:
    return x + y


def _register(app: Celery, name: str) -> Task:
    return app.task(name=name)(_add)


def test_dict_form_sets_attributes_of_the_named_task(app: Celery) -> None:
    app.conf.task_annotations = {"tasks.add": {"rate_limit": "10/s", "time_limit": 5}}
    add, mul = _register(app, "tasks.add"), _register(app, "tasks.mul")
    assert (add.rate_limit, add.time_limit) == ("10/s", 5)
    assert (mul.rate_limit, mul.time_limit) == (None, None)


def test_star_applies_to_every_task(app: Celery) -> None:
    app.conf.task_annotations = {"*": {"acks_late": True}}
    assert _register(app, "tasks.add").acks_late is True
    assert _register(app, "tasks.mul").acks_late is True


def test_star_wins_over_the_name_where_both_set_an_attribute_as_in_celery(app: Celery) -> None:
    app.conf.task_annotations = {
        "*": {"rate_limit": "10/s"},
        "tasks.add": {"rate_limit": "1/s", "time_limit": 5},
    }
    add = _register(app, "tasks.add")
    assert (add.rate_limit, add.time_limit) == ("10/s", 5)


class SlowDown:
    """The object form: annotate(task) returns the attributes, or None to pass."""

    def annotate(self, task: Task) -> dict[str, Any] | None:
        if task.name.startswith("tasks.slow"):
            return {"rate_limit": "1/m"}
        return None


def test_object_with_annotate_method(app: Celery) -> None:
    app.conf.task_annotations = SlowDown()
    assert _register(app, "tasks.slow_add").rate_limit == "1/m"
    assert _register(app, "tasks.add").rate_limit is None


def test_list_takes_the_first_annotation_that_matches_the_name(app: Celery) -> None:
    app.conf.task_annotations = [
        {"tasks.slow_add": {"rate_limit": "5/s"}},
        SlowDown(),
        {"*": {"acks_late": True}},
    ]
    task = _register(app, "tasks.slow_add")
    assert (task.rate_limit, task.acks_late) == ("5/s", True)
    assert _register(app, "tasks.slow_mul").rate_limit == "1/m"


@pytest.fixture
def annotations_module() -> Iterator[str]:
    module = types.ModuleType("annotations_for_test")
    module.SlowDown = SlowDown  # type: ignore[attr-defined]
    module.instance = SlowDown()  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    yield module.__name__
    del sys.modules[module.__name__]


@pytest.mark.parametrize("attribute", ["SlowDown", "instance"])
def test_dotted_path_to_an_annotation_class_or_object(
    app: Celery, annotations_module: str, attribute: str
) -> None:
    app.conf.task_annotations = f"{annotations_module}.{attribute}"
    assert _register(app, "tasks.slow_add").rate_limit == "1/m"


def test_annotations_set_after_registration_apply_when_the_worker_imports_tasks(
    app: Celery,
) -> None:
    add = _register(app, "tasks.add")
    app.conf.task_annotations = {"tasks.add": {"acks_late": True}}
    app.import_task_modules()
    assert add.acks_late is True


def test_config_from_object_applies_annotations_to_registered_tasks(app: Celery) -> None:
    add = _register(app, "tasks.add")
    app.config_from_object({"task_annotations": {"tasks.add": {"time_limit": 7}}})
    assert add.time_limit == 7


def test_annotated_time_limit_reaches_the_sent_message(app: Celery) -> None:
    from tests.unit.helpers import take_envelopes

    app.conf.task_annotations = {"tasks.add": {"time_limit": 30, "soft_time_limit": 20}}
    _register(app, "tasks.add").delay(1, 2)
    (envelope,) = take_envelopes(app)
    assert envelope["headers"]["timelimit"] == [30, 20]


def test_at_key_wraps_the_method_around_the_original(app: Celery) -> None:
    seen: list[Any] = []

    def around(method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(self: Task, exc: BaseException, task_id: str, *rest: Any) -> Any:
            seen.append((self.name, type(exc).__name__, task_id))
            return method(self, exc, task_id, *rest)

        return wrapped

    app.conf.task_annotations = {"tasks.fail": {"@on_failure": around}}

    @app.task(name="tasks.fail")
    def fail() -> None:
        raise ValueError("no")

    app.annotate_tasks()  # applying again does not wrap twice
    fail.apply(task_id="t-1")
    assert seen == [("tasks.fail", "ValueError", "t-1")]


def test_annotation_that_is_not_a_dict_of_attributes_is_refused(app: Celery) -> None:
    app.conf.task_annotations = {"tasks.add": "10/s"}
    with pytest.raises(ImproperlyConfigured, match="give a dict of task attributes"):
        _register(app, "tasks.add")


def test_object_without_annotate_is_refused(app: Celery) -> None:
    app.conf.task_annotations = [object()]
    with pytest.raises(ImproperlyConfigured, match="annotate\\(task\\) method"):
        _register(app, "tasks.add")


def test_at_key_for_a_method_the_task_lacks_is_refused(app: Celery) -> None:
    app.conf.task_annotations = {"*": {"@no_such_method": lambda method: method}}
    with pytest.raises(ImproperlyConfigured, match="has no method 'no_such_method'"):
        _register(app, "tasks.add")
