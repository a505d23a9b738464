"""``app.autodiscover_tasks`` in each of Celery's forms, with real packages on disk.

The Django form (no arguments) runs in a real worker in test_django.py; these are the forms a
project without Django, or with its own app list, writes. No server is needed.
"""

from __future__ import annotations

import logging
import sys
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celeriac, signals
from celeriac.errors import ImproperlyConfigured


@pytest.fixture
def packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Write packages under a fresh prefix; the modules are forgotten after the test."""
    prefix = f"disc_{uuid.uuid4().hex[:8]}"
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(name: str, **modules: str) -> str:
        package = tmp_path / f"{prefix}_{name}"
        package.mkdir()
        (package / "__init__.py").write_text("")
        for module, text in modules.items():
            (package / f"{module}.py").write_text(text)
        return package.name

    yield make
    for module in [m for m in sys.modules if m.startswith(prefix)]:
        del sys.modules[module]


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Celeriac]:
    """The app, importable by the task modules as ``disc_registry.app`` (a shared_task would
    stay registered on every app the rest of the session creates)."""
    app = Celeriac("disc", broker="memory://autodiscover", set_as_current=False)
    registry = types.ModuleType("disc_registry")
    registry.app = app  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "disc_registry", registry)
    yield app
    app.close()


TASKS = "from disc_registry import app\n\n@app.task\ndef ping():\n    return 'pong'\n"


def test_a_list_is_searched_only_when_the_worker_imports_task_modules(
    app: Celeriac, packages: Any
) -> None:
    orders = packages("orders", tasks=TASKS)
    assert app.autodiscover_tasks([orders]) is None
    assert f"{orders}.tasks" not in sys.modules  # lazy: nothing imported yet
    assert app.import_task_modules() == [f"{orders}.tasks"]
    assert f"{orders}.tasks.ping" in app.tasks


def test_a_callable_is_called_when_the_worker_imports_task_modules(
    app: Celeriac, packages: Any
) -> None:
    orders = packages("orders", tasks=TASKS)
    calls: list[str] = []

    def installed() -> list[str]:
        calls.append("called")
        return [orders]

    app.autodiscover_tasks(installed)
    assert calls == []
    app.import_task_modules()
    assert calls == ["called"]
    assert f"{orders}.tasks.ping" in app.tasks


def test_a_package_without_the_module_is_skipped(app: Celeriac, packages: Any) -> None:
    orders = packages("orders", tasks=TASKS)
    empty = packages("empty", models="")
    app.autodiscover_tasks([empty, orders])
    assert app.import_task_modules() == [f"{orders}.tasks"]


def test_related_name_picks_another_module_name(app: Celeriac, packages: Any) -> None:
    orders = packages("orders", jobs=TASKS)
    assert app.autodiscover_tasks([orders], related_name="jobs", force=True) == [f"{orders}.jobs"]
    assert f"{orders}.jobs.ping" in app.tasks


def test_related_name_none_imports_the_packages_themselves(app: Celeriac, packages: Any) -> None:
    orders = packages("orders")
    assert app.autodiscover_tasks([orders], related_name=None, force=True) == [orders]
    assert orders in sys.modules


def test_force_searches_at_once(app: Celeriac, packages: Any) -> None:
    orders = packages("orders", tasks=TASKS)
    assert app.autodiscover_tasks([orders], force=True) == [f"{orders}.tasks"]
    assert f"{orders}.tasks.ping" in app.tasks


def test_a_tasks_module_with_a_missing_import_is_an_error_not_skipped(
    app: Celeriac, packages: Any
) -> None:
    orders = packages("orders", tasks="import disc_dependency_not_installed\n")
    app.autodiscover_tasks([orders])
    with pytest.raises(ImproperlyConfigured) as caught:
        app.import_task_modules()
    message = str(caught.value)
    assert f"'{orders}.tasks'" in message
    assert "No module named 'disc_dependency_not_installed'" in message
    assert "\n" not in message


def test_a_failing_tasks_module_is_one_line_with_its_file_and_line(
    app: Celeriac, packages: Any
) -> None:
    orders = packages("orders", tasks="x = 1\nraise ValueError('bad constant')\n")
    app.autodiscover_tasks([orders])
    with pytest.raises(ImproperlyConfigured) as caught:
        app.import_task_modules()
    message = str(caught.value)
    assert "ValueError: bad constant" in message
    assert 'tasks.py", line 2' in message
    assert "-l debug" in message
    assert "\n" not in message


def test_no_arguments_outside_django_warns_and_imports_nothing(
    app: Celeriac, caplog: pytest.LogCaptureFixture
) -> None:
    app.autodiscover_tasks()
    with caplog.at_level(logging.WARNING, logger="celeriac.app.base"):
        assert app.import_task_modules() == []
    assert "DJANGO_SETTINGS_MODULE" in caplog.text


def test_import_modules_signal_is_sent_with_the_app_before_the_modules_import(
    app: Celeriac, packages: Any
) -> None:
    orders = packages("orders", tasks=TASKS)
    seen: list[tuple[Any, bool]] = []

    def receiver(sender: Any = None, **_: Any) -> None:
        seen.append((sender, f"{orders}.tasks" in sys.modules))

    signals.import_modules.connect(receiver)
    try:
        app.autodiscover_tasks([orders])
        app.import_task_modules()
    finally:
        signals.import_modules.disconnect(receiver)
    assert seen == [(app, False)]
