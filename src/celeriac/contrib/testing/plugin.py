"""The part of celeriac's pytest plugin that is always loaded (the ``pytest11`` entry point).

It adds no fixture of its own, so installing celeriac changes no test suite, and a project
that also uses Celery's plugin sees no name clash. The fixtures (``celery_app``,
``celery_worker``...) come from ``celeriac.contrib.pytest`` when a project asks for them, as
with Celery: ``pytest_plugins = ("celeriac.contrib.pytest",)``, ``-p celeriac.contrib.pytest``,
or ``celeriac_fixtures = true`` in the pytest ini settings (what installing pytest-celery
did for Celery).

The entry point cannot name ``celeriac.contrib.pytest`` itself: pytest refuses to register
a module a second time under another name, so a conftest's ``pytest_plugins`` line would
then fail with "Plugin already registered under a different name".
"""

from __future__ import annotations

import pytest

FIXTURES_PLUGIN = "celeriac.contrib.pytest"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "celeriac_fixtures",
        type="bool",
        default=False,
        help="load celeriac's Celery-named fixtures (celery_app, celery_worker, ...)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "celery(**overrides): override celeriac settings for one test"
    )
    if config.getini("celeriac_fixtures"):
        config.pluginmanager.import_plugin(FIXTURES_PLUGIN)
