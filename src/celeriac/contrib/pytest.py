"""pytest fixtures under Celery's names: ``celery_app``, ``celery_worker`` and the rest.

Enable them as with Celery: ``pytest_plugins = ("celeriac.contrib.pytest",)`` in a
``conftest.py``, or ``pytest -p celeriac.contrib.pytest``. Override ``celery_config``,
``celery_includes``, ``celery_parameters``, ``celery_worker_pool`` or
``celery_worker_parameters`` in your own ``conftest.py`` to change what the others build.
``@pytest.mark.celery(task_always_eager=True)`` overrides settings for one test.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

from ..app.base import Celeriac
from ..task import Task
from .testing.app import TestApp, setup_default_app
from .testing.worker import TestWorker, start_worker

# Celery's switch: with NO_WORKER set, the worker fixtures start nothing and yield None
NO_WORKER = os.environ.get("NO_WORKER")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "celery(**overrides): override celeriac settings for one test"
    )


@contextmanager
def _create_app(
    enable_logging: bool,
    use_trap: bool,
    parameters: Mapping[str, Any],
    config: Mapping[str, Any],
) -> Iterator[Celeriac]:
    app = TestApp(set_as_current=False, enable_logging=enable_logging, config=config, **parameters)
    try:
        with setup_default_app(app, use_trap=use_trap):
            yield app
    finally:
        app.close()


def _config_for(request: pytest.FixtureRequest, config: Mapping[str, Any]) -> dict[str, Any]:
    mark = request.node.get_closest_marker("celery")
    return {**config, **(mark.kwargs if mark else {})}


def _import_includes(includes: Sequence[str]) -> None:
    for module in includes:
        importlib.import_module(module)


@pytest.fixture(scope="session")
def use_celery_app_trap() -> bool:
    """Override to return True: the test app is then never made the current app."""
    return False


@pytest.fixture(scope="session")
def celery_enable_logging() -> bool:
    return False


@pytest.fixture(scope="session")
def celery_includes() -> Sequence[str]:
    """Override to list modules (tasks, signal receivers) to import before a worker starts."""
    return ()


@pytest.fixture(scope="session")
def celery_worker_pool() -> str:
    """Override to return 'threads'; the worker runs in a thread of the test process."""
    return "solo"


@pytest.fixture(scope="session")
def celery_config() -> Mapping[str, Any]:
    """Override to return the test app's settings, e.g. ``{"broker_url": "redis://..."}``."""
    return {}


@pytest.fixture(scope="session")
def celery_parameters() -> Mapping[str, Any]:
    """Override to return keyword arguments for the app's constructor (``main``, ...)."""
    return {}


@pytest.fixture(scope="session")
def celery_worker_parameters() -> Mapping[str, Any]:
    """Override to return keyword arguments for ``start_worker`` (``queues``, ...)."""
    return {}


@pytest.fixture(scope="session")
def celery_class_tasks() -> Sequence[Task]:
    """Override to return Task objects to register on the session app."""
    return []


@pytest.fixture
def celery_app(
    request: pytest.FixtureRequest,
    celery_config: Mapping[str, Any],
    celery_parameters: Mapping[str, Any],
    celery_enable_logging: bool,
    use_celery_app_trap: bool,
) -> Iterator[Celeriac]:
    """An app of its own for each test, the current app while the test runs."""
    config = _config_for(request, celery_config)
    with _create_app(celery_enable_logging, use_celery_app_trap, celery_parameters, config) as app:
        yield app


@pytest.fixture
def celery_worker(
    celery_app: Celeriac,
    celery_includes: Sequence[str],
    celery_worker_pool: str,
    celery_worker_parameters: Mapping[str, Any],
) -> Iterator[TestWorker | None]:
    """A worker for ``celery_app`` in a thread, stopped when the test returns."""
    if NO_WORKER:
        yield None
        return
    _import_includes(celery_includes)
    with start_worker(celery_app, pool=celery_worker_pool, **celery_worker_parameters) as worker:
        yield worker


@pytest.fixture(scope="session")
def celery_session_app(
    request: pytest.FixtureRequest,
    celery_config: Mapping[str, Any],
    celery_parameters: Mapping[str, Any],
    celery_enable_logging: bool,
    use_celery_app_trap: bool,
) -> Iterator[Celeriac]:
    """One app for the whole session."""
    config = _config_for(request, celery_config)
    with _create_app(celery_enable_logging, use_celery_app_trap, celery_parameters, config) as app:
        yield app


@pytest.fixture(scope="session")
def celery_session_worker(
    celery_session_app: Celeriac,
    celery_includes: Sequence[str],
    celery_class_tasks: Sequence[Task],
    celery_worker_pool: str,
    celery_worker_parameters: Mapping[str, Any],
) -> Iterator[TestWorker | None]:
    """One worker for the whole session, on ``celery_session_app``."""
    if NO_WORKER:
        yield None
        return
    _import_includes(celery_includes)
    for task in celery_class_tasks:
        celery_session_app.register_task(task)
    with start_worker(
        celery_session_app, pool=celery_worker_pool, **celery_worker_parameters
    ) as worker:
        yield worker


@pytest.fixture
def depends_on_current_app(celery_app: Celeriac) -> Iterator[Celeriac]:
    """``celery_app`` made the current app even when the trap is on."""
    with setup_default_app(celery_app):
        yield celery_app
