"""Django support: Celery's "First steps with Django" layout works with only the import changed.

Switched on when DJANGO_SETTINGS_MODULE is set, or when the app reads ``django.conf:settings``:

- before the worker imports task modules, ``django.setup()`` runs, so a ``tasks.py`` may
  import models at its top; ``autodiscover_tasks()`` with no arguments then searches every
  app in INSTALLED_APPS;
- the worker's main process closes the connections that importing opened, and each prefork
  child drops the connections it inherited without touching the manager's sessions; a child
  opens its own connection on its first query;
- around each task, connections that CONN_MAX_AGE says are too old, or that broke, are
  closed, as Django does around each request; caches are closed after each task.

Django is imported only when one of these runs, never by ``import celeriac``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import stat
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .. import signals
from ..errors import FixupWarning

if TYPE_CHECKING:
    from ..app import Celeriac

logger = logging.getLogger(__name__)

SETTINGS_ENV = "DJANGO_SETTINGS_MODULE"
SETTINGS_SOURCES = ("django.conf:settings", "django.conf.settings")

HINT_NOT_READY = (
    "a module imported Django models before Django was set up: set DJANGO_SETTINGS_MODULE "
    "(os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'proj.settings') in proj/celery.py, "
    "before the app is created) so the worker calls django.setup() first, or call "
    "django.setup() yourself before importing models"
)
HINT_SETTINGS = (
    "Django's settings are missing or wrong: set DJANGO_SETTINGS_MODULE "
    "(os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'proj.settings') in proj/celery.py) "
    "or call settings.configure() and django.setup() before the app reads its settings"
)


def wanted(config_source: object = None) -> bool:
    """True when the app is a Django project's: the settings variable is set, or the app
    reads Django's settings object."""
    return bool(os.environ.get(SETTINGS_ENV)) or _is_django_settings(config_source)


def settings_to_read(source: object, namespace: str | None) -> object:
    """What ``config_from_object`` reads: for Django's settings with a namespace, a mapping of
    only the names it selects (``CELERY_*``). Reading every name would fail on some (an
    empty SECRET_KEY raises; ``settings.configure()`` lists names it then refuses)."""
    if not namespace or not _is_django_settings(source):
        return source
    from django.conf import settings

    prefix = namespace.rstrip("_").upper() + "_"
    selected = {}
    for name in dir(settings):
        if name.startswith(prefix) and name.isupper():
            selected[name] = getattr(settings, name)
    return selected


def _is_django_settings(source: object) -> bool:
    if isinstance(source, str):
        return source in SETTINGS_SOURCES
    return type(source).__module__ == "django.conf"


def hint_for(exc: BaseException) -> str | None:
    """What to do about a Django error met while importing a module, or None when *exc*
    (or what caused it) is not one of Django's set-up errors."""
    for error in _chain(exc):
        if not type(error).__module__.startswith("django."):
            continue
        name = type(error).__name__
        if name == "AppRegistryNotReady":
            return HINT_NOT_READY
        if name == "ImproperlyConfigured":
            return HINT_SETTINGS
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


class DjangoFixup:
    """The app's Django support; see the module docstring for what it does and when."""

    def __init__(self, app: Celeriac) -> None:
        self.app = app

    @classmethod
    def for_app(cls, app: Celeriac) -> DjangoFixup | None:
        if importlib.util.find_spec("django") is None:
            warnings.warn(
                FixupWarning(
                    f"{SETTINGS_ENV} is set but Django is not installed, so Django is not set "
                    "up for the worker; pip install django, or unset the variable"
                ),
                stacklevel=3,
            )
            return None
        connect_receivers()
        return cls(app)

    def before_import(self) -> None:
        import django
        from django.apps import apps

        if not apps.ready:
            django.setup()

    def autodiscover_packages(self) -> list[str]:
        from django.apps import apps

        return [config.name for config in apps.get_app_configs()]

    def after_import(self) -> None:
        """The worker's main process runs no task: the connections that importing opened
        are closed now, so no child is forked holding one."""
        close_connections()


def connect_receivers() -> None:
    """Subscribe once per process: Django's connections are per process (and thread), not
    per app."""
    uid = "celeriac.fixups.django"
    signals.worker_process_init.connect(drop_inherited_connections, dispatch_uid=uid, weak=False)
    signals.task_prerun.connect(_before_task, dispatch_uid=uid, weak=False)
    signals.task_postrun.connect(_after_task, dispatch_uid=uid, weak=False)


def _is_eager(task: Any) -> bool:
    request = getattr(task, "request", None)
    return bool(getattr(request, "is_eager", False))


def _before_task(sender: Any = None, **_: Any) -> None:
    if not _is_eager(sender):  # an eager call runs inside its caller's transaction
        close_stale_connections()


def _after_task(sender: Any = None, **_: Any) -> None:
    if not _is_eager(sender):
        close_stale_connections()
        _close_caches()


def close_stale_connections() -> None:
    """Django's rule between two requests: close a connection that broke, that left
    autocommit, or that is older than its CONN_MAX_AGE (0: after every task)."""
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:  # a caller's open transaction is not ours to end
            conn.close_if_unusable_or_obsolete()


def close_connections() -> None:
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and not conn.in_atomic_block:
            conn.close()


def drop_inherited_connections(**_: Any) -> None:
    """In a freshly forked child: forget every connection inherited from the manager and
    close the caches; the child's first query opens a connection of its own."""
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        if conn.connection is None:
            continue
        _blind_socket(conn.connection)
        try:
            conn.close()
        except Exception:  # the copy is useless either way; the manager's session is intact
            logger.debug("closing an inherited %s connection failed", conn.alias, exc_info=True)
            conn.connection = None
    _close_caches()


def _blind_socket(raw: Any) -> None:
    """Point an inherited database socket at /dev/null: closing the child's copy then sends
    nothing to the server, where a PostgreSQL Terminate message would end the manager's
    session too."""
    fileno = getattr(raw, "fileno", None)
    if not callable(fileno):  # SQLite: a file, not a session
        return
    try:
        fd = int(fileno())
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            return
    except Exception:  # a driver that raises its own error for a closed connection
        logger.debug("no socket to detach for %r", raw, exc_info=True)
        return
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _close_caches() -> None:
    from django.core.cache import close_caches

    close_caches()
