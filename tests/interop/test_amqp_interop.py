"""Celery and celeriac on one RabbitMQ with no configuration, both ways: a real Celery 5
client feeds a celeriac worker, a celeriac client feeds a real Celery worker (results on
Redis). Tasks, errors, retries, countdowns, routing, chains, groups and chords."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import celery
import pytest

import celeriac
from tests.interop.peers import CELERY_WORKER_FLAGS, release_celery_results
from tests.support.workers import WorkerProcess, start_celeriac_worker, start_celery_worker

pytest_plugins = ["tests.support.rabbitmq_fixtures"]

SUPPORT = str(Path(__file__).resolve().parent.parent / "support")
if SUPPORT not in sys.path:
    sys.path.insert(0, SUPPORT)

from amqp_task_defs import configure, define_tasks  # noqa: E402

WAIT_S = 30.0
Factory = Callable[..., WorkerProcess]


@pytest.fixture
def workers(amqp_url: str, backend_url: str, rabbit_node: Any) -> Iterator[Factory]:
    rabbit_node.reset(("celery", "amqp-routed"))
    started: list[WorkerProcess] = []

    def start(kind: str, *args: str) -> WorkerProcess:
        if kind == "celery":
            worker = start_celery_worker(
                "celery_amqp_tasks", amqp_url, *args, *CELERY_WORKER_FLAGS, backend_url=backend_url
            )
        else:
            worker = start_celeriac_worker("amqp_tasks", amqp_url, *args, backend_url=backend_url)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if "celery_amqp_tasks" in worker.process.args:  # type: ignore[operator]
            worker.signal(signal.SIGKILL)  # a Celery worker's stop on AMQP takes ~10 s
        worker.stop()


@pytest.fixture
def celery_side(amqp_url: str, backend_url: str) -> Iterator[SimpleNamespace]:
    app = celery.Celery("amqp_client", broker=amqp_url, backend=backend_url, set_as_current=False)
    configure(app)
    tasks = define_tasks(app, "celery-client")
    yield tasks
    release_celery_results(app)
    app.close()


@pytest.fixture
def our_side(amqp_url: str, backend_url: str) -> Iterator[SimpleNamespace]:
    app = celeriac.Celery("amqp_client", broker=amqp_url, backend=backend_url)
    configure(app)
    yield define_tasks(app, "celeriac-client")
    app.close()


def test_celery_client_tasks_errors_and_retries_run_on_a_celeriac_worker(
    workers: Factory, celery_side: SimpleNamespace
) -> None:
    workers("celeriac", "-P", "prefork", "-c", "2", "-Q", "celery,amqp-routed")
    t = celery_side
    assert t.where.delay().get(timeout=WAIT_S)["implementation"] == "celeriac"
    assert t.add.delay(2, 3).get(timeout=WAIT_S) == 5
    failed = t.fail.delay("boom")
    with pytest.raises(ValueError, match="boom"):
        failed.get(timeout=WAIT_S)
    assert failed.state == "FAILURE"
    assert t.retry_once.delay().get(timeout=WAIT_S) == 1
    assert t.routed.delay().get(timeout=WAIT_S) == "celeriac"
    sent = time.monotonic()
    assert t.add.apply_async((1, 1), countdown=1.0).get(timeout=WAIT_S) == 2
    assert time.monotonic() - sent >= 0.9


def test_celery_client_canvas_runs_on_a_celeriac_worker(
    workers: Factory, celery_side: SimpleNamespace
) -> None:
    workers("celeriac", "-P", "threads", "-c", "4")
    t = celery_side
    assert celery.chain(t.add.s(1, 2), t.add.s(10)).delay().get(timeout=WAIT_S) == 13
    grouped = celery.group(t.add.s(i, i) for i in range(10)).apply_async()
    assert grouped.get(timeout=WAIT_S) == [2 * i for i in range(10)]
    chorded = celery.chord(t.add.s(i, i) for i in range(10))(t.tsum.s())
    assert chorded.get(timeout=WAIT_S) == 90


def test_celeriac_client_tasks_errors_and_retries_run_on_a_celery_worker(
    workers: Factory, our_side: SimpleNamespace
) -> None:
    workers("celery", "-P", "solo", "-Q", "celery,amqp-routed")
    t = our_side
    assert t.where.delay().get(timeout=WAIT_S)["implementation"] == "celery"
    assert t.add.delay(2, 3).get(timeout=WAIT_S) == 5
    failed = t.fail.delay("boom")
    with pytest.raises(ValueError, match="boom"):
        failed.get(timeout=WAIT_S)
    assert t.retry_once.delay().get(timeout=WAIT_S) == 1
    assert t.routed.delay().get(timeout=WAIT_S) == "celery"
    sent = time.monotonic()
    assert t.add.apply_async((1, 1), countdown=1.0).get(timeout=WAIT_S) == 2
    assert time.monotonic() - sent >= 0.9


def test_celeriac_client_canvas_runs_on_a_celery_worker(
    workers: Factory, our_side: SimpleNamespace
) -> None:
    workers("celery", "-P", "solo")
    t = our_side
    assert celeriac.chain(t.add.s(1, 2), t.add.s(10)).delay().get(timeout=WAIT_S) == 13
    grouped = celeriac.group(t.add.s(i, i) for i in range(10)).apply_async()
    assert grouped.get(timeout=WAIT_S) == [2 * i for i in range(10)]
    chorded = celeriac.chord(t.add.s(i, i) for i in range(10))(t.tsum.s())
    assert chorded.get(timeout=WAIT_S) == 90


def test_celery_and_celeriac_workers_share_one_queue(
    workers: Factory, celery_side: SimpleNamespace, our_side: SimpleNamespace
) -> None:
    workers("celeriac", "-P", "solo", "-n", "ours@%h")  # a node name each: one pidbox queue
    workers("celery", "-P", "solo", "-n", "theirs@%h")
    results = [our_side.where.delay() for _ in range(30)]
    results += [celery_side.where.delay() for _ in range(30)]
    seen = {r.get(timeout=WAIT_S)["implementation"] for r in results}
    assert seen <= {"celery", "celeriac"} and len(results) == 60


def test_celery_client_feeds_a_celeriac_worker_on_a_quorum_queue(
    amqp_url: str, backend_url: str, rabbit_node: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_QUEUE_TYPE", "quorum")  # read by both apps (amqp_task_defs)
    rabbit_node.reset(("celery",))
    app = celery.Celery("quorum_client", broker=amqp_url, backend=backend_url)
    configure(app)
    tasks = define_tasks(app, "celery-client")
    worker = start_celeriac_worker("amqp_tasks", amqp_url, "-P", "solo", backend_url=backend_url)
    try:
        assert tasks.add.delay(4, 5).get(timeout=WAIT_S) == 9
        with pytest.raises(ValueError, match="q-boom"):
            tasks.fail.delay("q-boom").get(timeout=WAIT_S)
        listed = rabbit_node.ctl("list_queues", "name", "type", "--no-table-headers")
        assert any(line.split()[:2] == ["celery", "quorum"] for line in listed.splitlines())
    finally:
        release_celery_results(app)
        app.close()
        worker.stop()
        rabbit_node.reset(("celery",))
