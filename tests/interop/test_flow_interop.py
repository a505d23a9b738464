"""A real Celery 5 client sends to a task with a global rate limit on celeriac workers: the
limit holds for messages Celery wrote, and the parked ones keep what Celery sent."""

from __future__ import annotations

from collections.abc import Callable

import celery
import redis

from tests.integration.test_flow_redis import max_in_window, rate_of, runs, start_workers
from tests.support.workers import WorkerProcess


def test_celery_client_tasks_obey_a_global_limit_on_celeriac_workers(
    worker_factory: Callable[..., WorkerProcess], celery_client: celery.Celery, redis_url: str
) -> None:
    start_workers(worker_factory, 2, "-P", "prefork", "-c", "2")
    count = 20
    results = [
        celery_client.send_task("flow.global_rate", (i,), priority=i % 3) for i in range(count)
    ]
    assert sorted(result.get(timeout=60) for result in results) == list(range(count))
    starts = [run[0] for run in runs(redis.Redis.from_url(redis_url), "global_rate")]
    rate = rate_of(starts)
    print(f"Celery client, global 5/s over 2 celeriac workers: {rate:.2f}/s")
    assert len(starts) == count
    assert max_in_window(starts, 2.0) <= 5 * 2 + 1
    assert abs(rate - 5.0) <= 0.5
