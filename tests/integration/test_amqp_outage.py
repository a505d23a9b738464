"""RabbitMQ restarted mid-drain: the client gets a clear error while it is down and sends
again once it is back, the prefork worker reconnects by itself, and no acks_late task is
lost (durable queues, persistent messages, unacked ones put back by the restart)."""

from __future__ import annotations

import time

import pytest

from celeriac import Celery
from celeriac.errors import BrokerError
from tests.support.rabbitmq import RabbitNode
from tests.support.workers import start_celeriac_worker

pytest_plugins = ["tests.support.rabbitmq_fixtures"]
pytestmark = pytest.mark.timeout(150)


def test_restart_mid_drain_loses_nothing_and_the_worker_reconnects(
    amqp_url: str, backend_url: str, rabbit_node: RabbitNode
) -> None:
    worker = start_celeriac_worker(
        "amqp_tasks", amqp_url, "-P", "prefork", "-c", "2", backend_url=backend_url
    )
    client = Celery("outage_client", broker=amqp_url, backend=backend_url)
    try:
        before = [client.send_task("amqp.sleep", (0.05,)) for _ in range(60)]
        deadline = time.monotonic() + 30
        while sum(r.ready() for r in before) < 5:  # polling results, bounded by the deadline
            assert time.monotonic() < deadline, "no task finished before the restart"
            time.sleep(0.05)
        rabbit_node.halt()  # down: sends fail with a clear error
        assert sum(r.ready() for r in before) < len(before), "the drain was over already"
        with pytest.raises(BrokerError, match=f"127.0.0.1:{rabbit_node.port}"):
            client.send_task("amqp.sleep", (0.01,))
        rabbit_node.restart()
        after = [client.send_task("amqp.sleep", (0.01,)) for _ in range(10)]
        for result in before + after:
            assert isinstance(result.get(timeout=60), int)  # each ran (the pid it ran in)
        assert worker.process.poll() is None
    finally:
        client.close()
        worker.stop()
