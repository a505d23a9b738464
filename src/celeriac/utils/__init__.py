"""Celery's ``celery.utils`` import paths that task modules use (``celeriac.utils.log``,
``from celery.utils import uuid``)."""

from __future__ import annotations

import uuid as _uuid

__all__ = ["uuid"]


def uuid() -> str:
    """A new random id in the form task ids take (Celery's ``celery.utils.uuid``)."""
    return str(_uuid.uuid4())
