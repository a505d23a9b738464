"""``get_task_logger`` and ``get_logger``, as Celery task modules import them.

A task logger hangs under the ``celeriac.task`` logger (Celery's ``celery.task``), which the
worker formats with ``worker_task_log_format``; its records carry ``task_name`` and
``task_id`` of the task running in the current slot ("???" outside a task), so a handler of
your own can use them too.
"""

from __future__ import annotations

import logging

from ..errors import ConfigurationError
from ..worker.logs import TASK_LOGGER, add_task_fields
from ..worker.logs import parse_level as mlevel

__all__ = ["base_logger", "get_logger", "get_task_logger", "mlevel", "task_logger"]

#: the parent of every ``get_logger`` logger that has no parent of its own
base_logger = logging.getLogger("celeriac")
#: the parent of every task logger
task_logger = logging.getLogger(TASK_LOGGER)

_RESERVED = frozenset({"celeriac", TASK_LOGGER, "celery", "celery.task"})


class TaskContextFilter(logging.Filter):
    """Puts the running task's name and id on each record of one task logger.

    It also puts the logger back under ``celeriac.task`` when the logging module has moved
    it: creating a logger named like an ancestor (``proj`` for ``proj.tasks``) after the
    task logger re-parents it.
    """

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self.logger = logger

    def filter(self, record: logging.LogRecord) -> bool:
        if self.logger.parent is not task_logger:
            self.logger.parent = task_logger
        add_task_fields(record)
        return True


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)``; a top-level name is put under the ``celeriac`` logger."""
    logger = logging.getLogger(name)
    if logger.parent is logging.root and logger is not base_logger:
        logger.parent = base_logger
    return logger


def get_task_logger(name: str) -> logging.Logger:
    """A logger for task code: ``logger = get_task_logger(__name__)`` at module level.

    Its lines are formatted by the worker with ``%(task_name)s[%(task_id)s]``.
    """
    if name in _RESERVED:
        raise ConfigurationError(
            f"logger name {name!r} is reserved for the worker's own loggers; "
            f"pass your module's name: get_task_logger(__name__)"
        )
    logger = logging.getLogger(name)
    logger.parent = task_logger
    if not any(isinstance(f, TaskContextFilter) for f in logger.filters):
        logger.addFilter(TaskContextFilter(logger))
    return logger
