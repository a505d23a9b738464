"""What both sides of the interop tests agree on."""

from __future__ import annotations

import gc
from typing import Any

# the routes tests/support/core_tasks.py and celery_core_tasks.py use
ROUTES = {"core.routed.*": {"queue": "routed"}}

# `ready.` is logged at INFO; mingle, gossip and heartbeats only slow the start
CELERY_WORKER_FLAGS = ("-l", "info", "--without-mingle", "--without-gossip", "--without-heartbeat")


def release_celery_backend(app: Any) -> None:
    """Stop a Celery client's result consumer and drop its Redis connections: its group and
    chord waits open pub/sub connections that ``app.close()`` keeps, and results freed after
    the test's Redis stops must not try to unsubscribe (their ``__del__`` would)."""
    backend = app.backend
    backend.result_consumer.stop()
    backend.result_consumer.subscribed_to.clear()
    backend.client.connection_pool.disconnect()


def release_celery_results(app: Any) -> None:
    """Celery keeps each result it waited on until its task is ready (and so past a test
    module); its ``AsyncResult.__del__`` then unsubscribes, which must happen while the
    test's Redis is still up: call this before closing a Celery client."""
    gc.collect()
    backend = app.backend
    for mapping in getattr(backend, "_pending_results", ()):
        for waiters in list(mapping.values()):
            for result in list(waiters.values()):
                backend.remove_pending_result(result)
    gc.collect()
