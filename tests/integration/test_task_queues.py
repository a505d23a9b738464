"""Celery-style ``task_queues`` (kombu objects, a priority queue, direct and topic exchanges)
on a real redis-server: each task lands on its queue's Redis list, and a worker started with
``-Q`` those queues runs them."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from celeriac import Celery
from tests.support.queue_tasks import configure
from tests.support.redis_server import RedisServer
from tests.support.workers import WorkerProcess

WAIT_S = 15.0
SEP = "\x06\x16"
ALL_QUEUES = "default,videos,images,urgent,errors"


@pytest.fixture
def client(redis_url: str, backend_url: str) -> Iterator[Celery]:
    app = Celery("queues_client", broker=redis_url, backend=backend_url)
    configure(app.conf)
    yield app
    app.close()


def _lengths(server: RedisServer, *keys: str) -> dict[str, int]:
    redis = server.client(0)
    return {key: int(redis.llen(key)) for key in keys}


def test_each_task_lands_on_the_redis_list_of_its_queue(
    client: Celery, redis_server: RedisServer
) -> None:
    client.send_task("queues.encode")  # exchange media, key media.video: videos
    client.send_task("queues.thumbnail")  # route names the queue: images
    client.send_task("queues.report")  # topic exchange logs, *.error matches web.error
    client.send_task("queues.plain")  # task_default_queue
    client.send_task("queues.plain", queue="urgent", priority=9)  # kombu's priority list
    assert _lengths(
        redis_server, "videos", "images", "errors", "default", "urgent", f"urgent{SEP}9"
    ) == {
        "videos": 1,
        "images": 1,
        "errors": 1,
        "default": 1,
        "urgent": 0,
        f"urgent{SEP}9": 1,
    }


def test_worker_consuming_the_declared_queues_runs_every_task(
    client: Celery, worker_factory: Callable[..., WorkerProcess]
) -> None:
    results = {
        "encode": client.send_task("queues.encode"),
        "thumbnail": client.send_task("queues.thumbnail"),
        "report": client.send_task("queues.report"),
        "plain": client.send_task("queues.plain"),
        "urgent": client.send_task("queues.plain", queue="urgent", priority=9),
    }
    worker = worker_factory("queue_tasks", "-P", "solo", "-Q", ALL_QUEUES)
    answers = {name: result.get(timeout=WAIT_S) for name, result in results.items()}
    assert {name: answer["routing_key"] for name, answer in answers.items()} == {
        "encode": "media.video",
        "thumbnail": "images",
        "report": "web.error",
        "plain": "default",
        "urgent": "urgent",
    }
    assert "errors       exchange=logs(topic) key=*.error" in worker.log()


def test_worker_consuming_one_queue_leaves_the_others_queued(
    client: Celery, worker_factory: Callable[..., WorkerProcess], redis_server: RedisServer
) -> None:
    video = client.send_task("queues.encode")
    client.send_task("queues.plain")
    client.send_task("queues.report")
    worker_factory("queue_tasks", "-P", "solo", "-Q", "videos")
    assert video.get(timeout=WAIT_S)["task"] == "queues.encode"
    assert _lengths(redis_server, "default", "errors") == {"default": 1, "errors": 1}


def test_worker_writes_the_bindings_celery_clients_route_through(
    worker_factory: Callable[..., WorkerProcess], redis_server: RedisServer
) -> None:
    worker_factory("queue_tasks", "-P", "solo", "-Q", "videos,errors")
    redis = redis_server.client(0)
    media = {member.decode() for member in redis.smembers("_kombu.binding.media")}
    logs = {member.decode() for member in redis.smembers("_kombu.binding.logs")}
    assert f"media.video{SEP}{SEP}videos" in media
    ((key, pattern, queue),) = [member.split(SEP) for member in logs]
    assert (key, queue) == ("*.error", "errors")
    assert pattern.startswith("^") and pattern.endswith("$")
