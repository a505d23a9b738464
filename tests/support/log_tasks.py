"""An app for the log-line tests' worker processes; its logging settings come from the
environment so each test can start a worker configured its own way:

- ``LOG_FORMAT`` / ``LOG_TASK_FORMAT``: ``worker_log_format`` / ``worker_task_log_format``;
- ``LOG_REDIRECT_LEVEL``: ``worker_redirect_stdouts_level``;
- ``USER_LOG`` with ``LOG_HIJACK=0``: the user's own root handler (a file), which
  ``worker_hijack_root_logger = False`` must leave in place;
- ``USER_LOG`` with ``LOG_SETUP_SIGNAL=1``: a ``setup_logging`` receiver that configures
  logging itself, so celeriac must not.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import redis

from celeriac import Celery, signals
from celeriac.utils.log import get_task_logger

app = Celery("log_tasks")
logger = get_task_logger(__name__)

if os.environ.get("LOG_FORMAT"):
    app.conf.worker_log_format = os.environ["LOG_FORMAT"]
if os.environ.get("LOG_TASK_FORMAT"):
    app.conf.worker_task_log_format = os.environ["LOG_TASK_FORMAT"]
if os.environ.get("LOG_REDIRECT_LEVEL"):
    app.conf.worker_redirect_stdouts_level = os.environ["LOG_REDIRECT_LEVEL"]


def _user_handler(prefix: str) -> logging.Handler:
    handler = logging.FileHandler(os.environ["USER_LOG"])
    handler.setFormatter(logging.Formatter(f"{prefix} %(levelname)s %(name)s %(message)s"))
    return handler


if os.environ.get("LOG_HIJACK") == "0":
    app.conf.worker_hijack_root_logger = False
    logging.getLogger().addHandler(_user_handler("USER"))
    logging.getLogger().setLevel(logging.INFO)

if os.environ.get("LOG_SETUP_SIGNAL") == "1":

    @signals.setup_logging.connect
    def own_logging(loglevel: Any = None, **kwargs: Any) -> None:
        root = logging.getLogger()
        root.addHandler(_user_handler("SIGNAL"))
        root.setLevel(logging.INFO)


@app.task(name="log.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="log.big")
def big(size: int) -> str:
    return "x" * size


@app.task(name="log.boom")
def boom() -> None:
    raise ValueError("boom on purpose")


@app.task(name="log.flaky", bind=True, max_retries=1)
def flaky(self: Any) -> str:
    if self.request.retries == 0:
        raise self.retry(exc=KeyError("first try"), countdown=0)
    return "second try"


@app.task(name="log.chatty")
def chatty(text: str) -> str:
    logger.warning("task says %s", text)
    print(f"printed {text}")
    return text


@app.task(name="log.long_lines")
def long_lines(tag: str, size: int, count: int, together: str = "", wanted: int = 0) -> int:
    """Log *count* long lines; with *together*, first wait (10 s at most) until *wanted*
    tasks have arrived at that Redis key, so several children log at the same time."""
    if together:
        client = redis.Redis.from_url(os.environ["CELERIAC_BROKER_URL"])
        client.incr(together)
        deadline = time.monotonic() + 10
        while int(client.get(together) or 0) < wanted and time.monotonic() < deadline:
            time.sleep(0.01)
        client.close()
    for number in range(count):
        logger.warning("%s-%04d %s end", tag, number, "x" * size)
    return count
