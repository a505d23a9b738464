"""The app's constructor takes Celery's arguments, not only its settings."""

from __future__ import annotations

import sys
import types
import warnings
from collections.abc import Iterator

import pytest

from celeriac import Celery, Task, shared_task
from celeriac.app import default_app
from celeriac.errors import ImproperlyConfigured


class AuditedTask(Task):
    audited = True


@pytest.fixture
def task_module() -> Iterator[str]:
    name = "unit_task_base_module"
    module = types.ModuleType(name)
    module.AuditedTask = AuditedTask  # type: ignore[attr-defined]
    sys.modules[name] = module
    yield name
    del sys.modules[name]


def test_task_cls_is_the_base_of_every_task_of_the_app() -> None:
    app = Celery("app", broker="memory://app", task_cls=AuditedTask)

    @app.task
    def noop() -> None:
        return None

    assert isinstance(noop, AuditedTask)


def test_task_cls_given_as_a_path_is_imported(task_module: str) -> None:
    app = Celery("app", broker="memory://app", task_cls=f"{task_module}:AuditedTask")

    @app.task
    def noop() -> None:
        return None

    assert isinstance(noop, AuditedTask)


def test_task_cls_that_is_not_a_task_class_raises() -> None:
    with pytest.raises(ImproperlyConfigured, match="task_cls"):
        Celery("app", broker="memory://app", task_cls=dict)  # type: ignore[arg-type]


def test_celery_constructor_arguments_are_not_taken_for_unknown_settings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Celery("app", broker="memory://app", set_as_current=False, task_cls=AuditedTask)


def test_set_as_current_false_leaves_the_current_app_alone() -> None:
    current = Celery("current", broker="memory://app")
    Celery("side", broker="memory://app", set_as_current=False)
    assert default_app() is current


def test_new_app_becomes_the_current_app() -> None:
    app = Celery("newest", broker="memory://app")
    assert default_app() is app


def test_namespace_given_to_the_app_applies_to_config_from_object() -> None:
    class DjangoSettings:
        CELERY_TASK_DEFAULT_QUEUE = "from_django"

    app = Celery("app", namespace="CELERY")
    app.config_from_object(DjangoSettings)
    assert app.conf.task_default_queue == "from_django"


def test_shared_task_with_no_current_app_still_registers_on_every_app() -> None:
    side = Celery("side", broker="memory://app", set_as_current=False)

    @shared_task(name="app.shared_side")
    def shared_side() -> None:
        return None

    assert "app.shared_side" in side.tasks
