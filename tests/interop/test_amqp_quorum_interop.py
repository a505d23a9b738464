"""Countdowns on RabbitMQ quorum queues between Celery and celeriac, both ways: each side's
client sends a countdown task into Celery 5.5's native delayed delivery topology (the
``celery_delayed_*`` levels) and the other side's worker runs it when due, not before."""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celery
import pytest

import celeriac
from tests.interop.peers import CELERY_WORKER_FLAGS, release_celery_results
from tests.support.rabbitmq import RabbitNode
from tests.support.rabbitmq_quorum import forget, ready_count
from tests.support.workers import WorkerProcess, start_celeriac_worker, start_celery_worker

pytest_plugins = ["tests.support.rabbitmq_fixtures"]
pytestmark = pytest.mark.timeout(120)

SUPPORT = str(Path(__file__).resolve().parent.parent / "support")
if SUPPORT not in sys.path:
    sys.path.insert(0, SUPPORT)

from amqp_quorum_defs import configure, define_tasks  # noqa: E402

QUEUE = "quorum-interop"
ENV = {"TEST_QUEUE": QUEUE, "TEST_EXCHANGE_TYPE": "topic"}
COUNTDOWN_S = 2.5
WAIT_S = 30.0


@pytest.fixture
def setup(
    amqp_url: str, backend_url: str, rabbit_node: RabbitNode, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    forget(rabbit_node, QUEUE)
    started: list[WorkerProcess] = []
    yield {"started": started, "amqp_url": amqp_url, "backend_url": backend_url}
    for worker in started:
        if "celery_amqp_quorum_tasks" in worker.process.args:  # type: ignore[operator]
            worker.signal(signal.SIGKILL)  # a Celery worker's stop on AMQP takes ~10 s
        worker.stop()
    forget(rabbit_node, QUEUE)


def check_timing(ran: dict[str, Any], due: float, implementation: str) -> None:
    assert ran["implementation"] == implementation
    assert due <= ran["time"] <= due + 3.0, ran["time"] - due


def test_celery_clients_countdown_runs_on_a_celeriac_worker_when_due(
    setup: dict[str, Any], rabbit_node: RabbitNode
) -> None:
    url, backend = setup["amqp_url"], setup["backend_url"]
    worker = start_celeriac_worker(
        "amqp_quorum_tasks", url, "-P", "solo", backend_url=backend, env_extra=ENV
    )
    setup["started"].append(worker)
    app = celery.Celery("quorum_celery_client", broker=url, backend=backend, set_as_current=False)
    configure(app)
    tasks = define_tasks(app, "celery-client")
    try:
        due = time.time() + COUNTDOWN_S
        sent = tasks.ran_at.apply_async(countdown=COUNTDOWN_S)
        # in RabbitMQ's 2 s level (2.5 s: binary 10 at whole seconds), not in the worker
        assert ready_count(rabbit_node, "celery_delayed_1") == 1
        check_timing(sent.get(timeout=WAIT_S), due, "celeriac")
    finally:
        release_celery_results(app)
        app.close()


def test_celeriac_clients_countdown_runs_on_a_celery_worker_when_due(
    setup: dict[str, Any], rabbit_node: RabbitNode, caplog: pytest.LogCaptureFixture
) -> None:
    url, backend = setup["amqp_url"], setup["backend_url"]
    worker = start_celery_worker(
        "celery_amqp_quorum_tasks", url, *CELERY_WORKER_FLAGS, backend_url=backend, env_extra=ENV
    )
    setup["started"].append(worker)
    app = celeriac.Celery("quorum_client", broker=url, backend=backend)
    configure(app)
    tasks = define_tasks(app, "celeriac-client")
    try:
        with caplog.at_level(logging.WARNING, logger="celeriac.brokers.amqp"):
            due = time.time() + COUNTDOWN_S
            sent = tasks.ran_at.apply_async(countdown=COUNTDOWN_S)
            assert ready_count(rabbit_node, "celery_delayed_1") == 1
            check_timing(sent.get(timeout=WAIT_S), due, "celery")
        # the queue and the delayed topology the Celery worker declared are ours as well
        assert not caplog.records, [r.getMessage() for r in caplog.records]
    finally:
        app.close()
