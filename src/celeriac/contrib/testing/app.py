"""``TestApp`` and ``setup_default_app``: an app for one test, on an in-process broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ...app import base
from ...app.base import Celeriac
from .worker import ensure_ping_task

DEFAULT_TEST_CONFIG: dict[str, Any] = {
    "worker_hijack_root_logger": False,
    "accept_content": ["json"],
    "enable_utc": True,
    "timezone": "UTC",
}


def TestApp(
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    enable_logging: bool = False,
    set_as_current: bool = False,
    broker: str | None = None,
    backend: str | None = None,
    **kwargs: Any,
) -> Celeriac:
    """An app for tests: ``memory://`` broker and results of its own unless *config* or
    *broker*/*backend* say otherwise, and the ``celery.ping`` task that ``start_worker``'s
    check sends. *enable_logging* is accepted for Celery's signature: the test runner
    configures logging."""
    own = f"memory://test-{uuid.uuid4().hex}"  # a fresh store: no message from another test
    settings = {**DEFAULT_TEST_CONFIG, **(config or {})}
    broker = broker or settings.pop("broker_url", None) or own
    backend = backend or settings.pop("result_backend", None) or own
    app = Celeriac(
        name or "celery.tests",
        broker=broker,
        backend=backend,
        set_as_current=set_as_current,
        **kwargs,
    )
    for key, value in settings.items():
        app.conf[key] = value
    ensure_ping_task(app)
    return app


@contextmanager
def setup_default_app(app: Celeriac, use_trap: bool = False) -> Iterator[None]:
    """Make *app* the current app (``current_app``, the app of ``shared_task`` calls)
    while the block runs, and put the previous one back afterwards.

    *use_trap* keeps *app* from becoming current, so code that reaches for the current
    app instead of the one it was given gets another app."""
    with base._lock:
        before = list(base._default)
        if not use_trap:
            base._default[:] = [app]
    try:
        yield
    finally:
        with base._lock:
            base._default[:] = before
