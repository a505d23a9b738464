"""Framework support that switches itself on: today Django (:mod:`celeriac.fixups.django`).

The app asks :func:`fixups_for` once when it is created and again when it reads its settings
from a framework (``config_from_object("django.conf:settings")``). A fixup is a plain object
the app calls at known points; nothing is found by name at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..app import Celeriac


class Fixup(Protocol):
    """What the app calls on a framework's fixup."""

    def before_import(self) -> None:
        """Ready the framework before task modules are imported (``django.setup()``)."""

    def autodiscover_packages(self) -> list[str]:
        """The packages ``autodiscover_tasks()`` searches when given none."""
        ...

    def after_import(self) -> None:
        """The worker's task modules are imported; nothing of the import may outlive it."""


def fixups_for(app: Celeriac, config_source: object = None) -> list[Fixup]:
    """The fixups this app needs now: Django's when DJANGO_SETTINGS_MODULE is set or
    *config_source* is Django's settings."""
    from . import django

    if django.wanted(config_source):
        fixup = django.DjangoFixup.for_app(app)
        if fixup is not None:
            return [fixup]
    return []
