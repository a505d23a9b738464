"""``celery.ping``, the task ``start_worker``'s check sends, as Celery's testing module has it:
importing this module registers it on every app (it is a ``shared_task``)."""

from __future__ import annotations

from typing import Any

from ...app.base import shared_task
from .worker import PING_TASK
from .worker import ping as _ping

ping: Any = shared_task(name=PING_TASK)(_ping)
