"""The rpc:// result backend over RabbitMQ, the Celery client's way round: a real Celery client
sends tasks to a celeriac prefork worker and reads their results from its own reply queue.

The worker records STARTED (``task_track_started``), so each task sends its client two
messages, and a retried task three: the client must get the last one every time."""

from __future__ import annotations

from collections.abc import Iterator

import celery
import pytest

from tests.support.rabbitmq import RabbitNode
from tests.support.workers import WorkerProcess, start_celeriac_worker

pytest_plugins = ["tests.support.rabbitmq_fixtures"]

WAIT_S = 30.0


@pytest.fixture(scope="module")
def worker(rabbit_node: RabbitNode) -> Iterator[WorkerProcess]:
    rabbit_node.reset()
    started = start_celeriac_worker(
        "rpc_tasks", rabbit_node.url, "-P", "prefork", "-c", "2", backend_url="rpc://"
    )
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def client(worker: WorkerProcess, rabbit_node: RabbitNode) -> Iterator[celery.Celery]:
    app = celery.Celery(
        "rpc_client", broker=rabbit_node.url, backend="rpc://", set_as_current=False
    )
    app.conf.broker_transport_options = {"confirm_publish": True}  # see amqp_task_defs
    try:
        yield app
    finally:
        app.close()


def test_celery_client_reads_results_and_an_error_from_a_celeriac_worker(
    client: celery.Celery,
) -> None:
    results = [client.send_task("amqp.add", (i, i)) for i in range(8)]
    failed = client.send_task("amqp.fail", ("rpc-boom",))
    assert [r.get(timeout=WAIT_S) for r in results] == [2 * i for i in range(8)]
    with pytest.raises(ValueError, match="rpc-boom"):
        failed.get(timeout=WAIT_S)
    assert failed.state == "FAILURE"
    assert all(r.state == "SUCCESS" for r in results)


def test_celery_client_reads_the_end_of_a_retried_task(client: celery.Celery) -> None:
    assert client.send_task("amqp.retry_once").get(timeout=WAIT_S) == 1


def test_celery_client_joins_a_group_from_a_celeriac_worker(client: celery.Celery) -> None:
    job = celery.group(client.signature("amqp.add", (i, 10)) for i in range(6))
    result = job.apply_async()
    assert result.get(timeout=WAIT_S) == [i + 10 for i in range(6)]
    assert [member.state for member in result.results] == ["SUCCESS"] * 6


def test_results_sent_before_the_client_listens_wait_in_its_reply_queue(
    client: celery.Celery, worker: WorkerProcess
) -> None:
    """The client declares its reply queue before it sends, and consumes only at get():
    results answered meanwhile wait in the queue."""
    results = [client.send_task("amqp.add", (i, 1)) for i in range(4)]
    for r in results:
        worker.wait_for_log(f"Task amqp.add[{r.id}] succeeded")
    assert [r.get(timeout=WAIT_S) for r in results] == [i + 1 for i in range(4)]
