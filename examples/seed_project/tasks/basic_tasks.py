"""Small tasks on the ``basic`` queue: the seed's ``add`` and ``multiply``, and the question
the seed asks — where did this run?"""

from __future__ import annotations

import logging
from typing import Any

from celery_app import app

logger = logging.getLogger(__name__)


@app.task
def add(x: int, y: int) -> int:
    logger.info("计算 %s + %s", x, y)
    return x + y


@app.task
def multiply(x: int, y: int) -> int:
    return x * y


@app.task(bind=True)
def where_am_i(self: Any) -> dict[str, Any]:
    """The execution place the worker recorded: pool, pid, ppid, thread, greenlet, child."""
    return dict(self.request.place)
