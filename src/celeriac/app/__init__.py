"""The application: ``Celery`` (alias of ``Celeriac``), ``shared_task`` and app loading.

``celeriac.app.task`` and ``celeriac.app.control`` are the import paths Celery projects use;
the implementation lives in :mod:`celeriac.app.base`.
"""

from __future__ import annotations

from .base import Celeriac, Celery, default_app, load_app, shared_task
from .send_checks import SEND_OPTIONS

__all__ = ["SEND_OPTIONS", "Celeriac", "Celery", "default_app", "load_app", "shared_task"]
