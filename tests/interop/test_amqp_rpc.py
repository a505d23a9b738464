"""The rpc:// result backend over RabbitMQ: a celeriac client reads the results that a celeriac
or a Celery worker sends as messages to its reply queue, in Celery's format."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

import celeriac
from tests.interop.peers import CELERY_WORKER_FLAGS
from tests.support.workers import WorkerProcess, start_celeriac_worker, start_celery_worker

pytest_plugins = ["tests.support.rabbitmq_fixtures"]

WAIT_S = 30.0


@pytest.fixture
def started() -> Iterator[list[WorkerProcess]]:
    workers: list[WorkerProcess] = []
    yield workers
    for worker in workers:
        if "celery_amqp_tasks" in worker.process.args:  # type: ignore[operator]
            worker.signal(signal.SIGKILL)  # a Celery worker's stop on AMQP takes ~10 s
        worker.stop()


def test_celeriac_client_reads_rpc_results_from_either_worker(
    amqp_url: str, started: list[WorkerProcess]
) -> None:
    app = celeriac.Celery("rpc_client", broker=amqp_url, backend="rpc://")
    try:
        started.append(
            start_celery_worker(
                "celery_amqp_tasks",
                amqp_url,
                "-P",
                "solo",
                *CELERY_WORKER_FLAGS,
                backend_url="rpc://",
            )
        )
        first = [app.send_task("amqp.where") for _ in range(3)]
        assert {r.get(timeout=WAIT_S)["implementation"] for r in first} == {"celery"}
        theirs = started.pop()
        theirs.signal(signal.SIGKILL)
        theirs.stop()
        started.append(
            start_celeriac_worker("amqp_tasks", amqp_url, "-P", "solo", backend_url="rpc://")
        )
        second = [app.send_task("amqp.where") for _ in range(3)]
        assert {r.get(timeout=WAIT_S)["implementation"] for r in second} == {"celeriac"}
        failed = app.send_task("amqp.fail", ("ours-boom",))
        with pytest.raises(ValueError, match="ours-boom"):
            failed.get(timeout=WAIT_S)
    finally:
        app.close()
