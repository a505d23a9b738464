"""``celery.app.control``'s names: ``Control`` (``app.control``) and ``Inspect``
(``app.control.inspect()``). Both live in :mod:`celeriac.control`."""

from __future__ import annotations

from ..control import Control, Inspect, flatten_reply

__all__ = ["Control", "Inspect", "flatten_reply"]
