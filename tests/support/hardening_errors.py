"""An exception module the Celery worker in the safe-decode interop test raises from; the
client test checks it is imported only when the client's allow-list names it."""

from __future__ import annotations


class ProjectError(Exception):
    """A project's own exception type."""
