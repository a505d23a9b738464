"""A real Celery client with kombu ``task_queues`` (direct and priority queues, routes by
queue and by exchange and routing key) sends; a celeriac worker consuming those queues runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import celery
import pytest

from celeriac import Celery
from tests.interop.peers import CELERY_WORKER_FLAGS
from tests.support.queue_tasks import configure
from tests.support.redis_server import RedisServer
from tests.support.workers import WorkerProcess

WAIT_S = 15.0
SEP = "\x06\x16"


@pytest.fixture
def celery_queues_client(redis_url: str, backend_url: str) -> Iterator[celery.Celery]:
    app = celery.Celery(
        "queues_client", broker=redis_url, backend=backend_url, set_as_current=False
    )
    configure(app.conf)
    yield app
    app.close()


@pytest.fixture
def worker(worker_factory: Callable[..., WorkerProcess]) -> WorkerProcess:
    return worker_factory("queue_tasks", "-P", "solo", "-Q", "default,videos,images,urgent")


def test_celery_route_by_queue_name_reaches_the_celeriac_worker(
    worker: WorkerProcess, celery_queues_client: celery.Celery
) -> None:
    result = celery_queues_client.send_task("queues.thumbnail")
    assert result.get(timeout=WAIT_S) == {"task": "queues.thumbnail", "routing_key": "images"}


def test_celery_route_by_exchange_and_key_finds_the_bindings_of_the_celeriac_worker(
    worker: WorkerProcess, celery_queues_client: celery.Celery
) -> None:
    # kombu looks the exchange's bindings up in Redis; only the worker has declared them
    result = celery_queues_client.send_task("queues.encode")
    assert result.get(timeout=WAIT_S) == {"task": "queues.encode", "routing_key": "media.video"}


def test_celery_default_queue_settings_reach_the_celeriac_worker(
    worker: WorkerProcess, celery_queues_client: celery.Celery
) -> None:
    result = celery_queues_client.send_task("queues.plain")
    assert result.get(timeout=WAIT_S)["task"] == "queues.plain"


def test_celery_priority_message_on_the_priority_queue_is_run(
    celery_queues_client: celery.Celery,
    worker_factory: Callable[..., WorkerProcess],
    redis_server: RedisServer,
) -> None:
    result = celery_queues_client.send_task("queues.plain", queue="urgent", priority=9)
    assert redis_server.client(0).llen(f"urgent{SEP}9") == 1  # kombu's list for priority 9
    worker_factory("queue_tasks", "-P", "solo", "-Q", "urgent")
    assert result.get(timeout=WAIT_S) == {"task": "queues.plain", "routing_key": "urgent"}


def test_celeriac_client_routes_into_the_queues_a_celery_worker_consumes(
    redis_url: str, backend_url: str, celery_worker_factory: Callable[..., WorkerProcess]
) -> None:
    client = Celery("queues_client", broker=redis_url, backend=backend_url)
    configure(client.conf)
    try:
        results = [
            client.send_task("queues.encode"),  # direct exchange media: videos
            client.send_task("queues.report"),  # topic exchange logs: errors
            client.send_task("queues.plain", queue="urgent", priority=9),
        ]
        celery_worker_factory(
            "celery_queue_tasks", "-P", "solo", "-Q", "videos,errors,urgent", *CELERY_WORKER_FLAGS
        )
        assert [result.get(timeout=WAIT_S) for result in results] == [
            {"task": "queues.encode", "routing_key": "media.video"},
            {"task": "queues.report", "routing_key": "web.error"},
            {"task": "queues.plain", "routing_key": "urgent"},
        ]
    finally:
        client.close()
