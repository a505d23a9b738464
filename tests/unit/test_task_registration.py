"""Registering tasks: names, ``@app.task`` in both forms, options, ``shared_task``."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from celeriac import Celery, NotRegistered, Task, shared_task
from celeriac.errors import DuplicateTaskNameWarning, ImproperlyConfigured


def add(x: int, y: int) -> int:
    return x + y


def test_task_name_is_module_dot_function(app: Celery) -> None:
    assert app.task(add).name == f"{__name__}.add"


def test_task_defined_in_main_is_named_after_the_app_main() -> None:
    app = Celery("proj", broker="memory://names")
    assert app.gen_task_name("add", "__main__") == "proj.add"


def test_task_defined_in_main_of_an_app_without_main_keeps_main() -> None:
    app = Celery(broker="memory://names")
    assert app.gen_task_name("add", "__main__") == "__main__.add"


def test_bare_decorator_returns_a_registered_task(app: Celery) -> None:
    @app.task
    def mul(x: int, y: int) -> int:
        return x * y

    assert isinstance(mul, Task)
    assert app.tasks[mul.name] is mul


def test_decorator_called_without_options_registers_the_task(app: Celery) -> None:
    @app.task()
    def mul(x: int, y: int) -> int:
        return x * y

    assert isinstance(mul, Task)
    assert app.tasks[mul.name] is mul


def test_decorator_name_option_sets_the_task_name(app: Celery) -> None:
    @app.task(name="custom.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    assert mul.name == "custom.mul"
    assert app.tasks["custom.mul"] is mul


def test_decorator_options_become_task_attributes(app: Celery) -> None:
    @app.task(queue="math", max_retries=7, acks_late=True, my_flag="kept")
    def mul(x: int, y: int) -> int:
        return x * y

    assert (mul.queue, mul.max_retries, mul.acks_late) == ("math", 7, True)
    assert mul.my_flag == "kept"  # type: ignore[attr-defined]


def test_task_called_with_function_and_options_registers_with_those_options(app: Celery) -> None:
    task = app.task(add, name="direct.add")
    assert isinstance(task, Task)
    assert app.tasks["direct.add"] is task


def test_decorator_given_a_non_callable_raises_type_error(app: Celery) -> None:
    with pytest.raises(TypeError, match="options as keywords"):
        app.task("proj.add")  # type: ignore[call-overload]


def test_base_option_makes_the_task_an_instance_of_that_class(app: Celery) -> None:
    class AuditedTask(Task):
        audited = True

    @app.task(base=AuditedTask)
    def mul(x: int, y: int) -> int:
        return x * y

    assert isinstance(mul, AuditedTask)


def test_base_option_that_is_not_a_task_class_raises(app: Celery) -> None:
    with pytest.raises(ImproperlyConfigured, match="Task subclass"):

        @app.task(base=dict)
        def mul(x: int, y: int) -> int:
            return x * y


def test_task_keeps_the_function_name_and_docstring(app: Celery) -> None:
    @app.task
    def documented() -> None:
        """Does nothing, carefully."""

    assert documented.__doc__ == "Does nothing, carefully."
    assert documented.__wrapped__.__name__ == "documented"


def test_lookup_of_an_unknown_name_raises_not_registered_naming_it(app: Celery) -> None:
    with pytest.raises(NotRegistered, match=r"'proj\.nope'") as caught:
        app.lookup("proj.nope")
    assert caught.value.task_name == "proj.nope"


def test_shared_task_is_registered_on_an_existing_app(app: Celery) -> None:
    @shared_task(name="shared.existing")
    def shared_existing() -> str:
        return "ok"

    assert "shared.existing" in app.tasks


def test_shared_task_is_registered_on_an_app_created_later() -> None:
    @shared_task(name="shared.later")
    def shared_later() -> str:
        return "ok"

    later = Celery("later", broker="memory://shared-later")
    assert later.tasks["shared.later"].name == "shared.later"


def test_bare_shared_task_uses_the_module_dot_function_name(app: Celery) -> None:
    @shared_task
    def shared_bare() -> str:
        return "ok"

    assert f"{__name__}.shared_bare" in app.tasks


def test_shared_task_returns_a_callable_task() -> None:
    @shared_task(name="shared.callable")
    def shared_callable(x: int) -> int:
        return x + 1

    assert shared_callable(1) == 2


def test_task_repr_names_the_task_and_app(app: Celery) -> None:
    task: Any = app.task(add, name="repr.add")
    assert repr(task) == "<@task: repr.add of unit>"


def test_a_second_callable_under_a_taken_name_warns_and_the_first_stays(app: Celery) -> None:
    first = app.task(name="dup.job")(add)

    def other(x: int, y: int) -> int:
        return x - y

    with pytest.warns(DuplicateTaskNameWarning, match=r"'dup\.job'.*unique name"):
        second = app.task(name="dup.job")(other)
    assert second is first  # as Celery: calls under the name reach the first callable
    assert app.tasks["dup.job"](5, 3) == 8


def test_the_same_callable_registered_again_is_quietly_the_same_task(app: Celery) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert app.task(name="dup.same")(add) is app.task(name="dup.same")(add)


def test_register_task_over_a_taken_name_warns_and_replaces(app: Celery) -> None:
    app.task(name="dup.cls")(add)

    class Sub(Task):
        name = "dup.cls"

        def run(self, x: int) -> int:
            return x * 10

    with pytest.warns(DuplicateTaskNameWarning, match="replaced the existing one"):
        task = app.register_task(Sub())
    assert app.tasks["dup.cls"] is task
