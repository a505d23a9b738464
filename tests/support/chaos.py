"""The broker-fault tests' workers (test_outage.py, test_redis_faults.py): chaos_tasks
workers on a Redis of the test's own, recording their runs in another Redis that stays up."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from tests.support.redis_server import RedisServer
from tests.support.workers import WorkerProcess, start_celeriac_worker


@contextlib.contextmanager
def chaos_workers(broker: RedisServer, record_url: str) -> Iterator[Callable[..., WorkerProcess]]:
    """A function that starts a chaos_tasks worker with the given CLI arguments, broker on
    *broker* db 0 and results in db 1; every worker it started is stopped on exit."""
    started: list[WorkerProcess] = []

    def start(*args: str) -> WorkerProcess:
        worker = start_celeriac_worker(
            "chaos_tasks",
            broker.url(0),
            *args,
            backend_url=broker.url(1),
            env_extra={"TEST_RECORD_URL": record_url},
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
