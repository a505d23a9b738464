"""The shortest path through the system: a client, a real Redis, a solo worker."""

from __future__ import annotations

from collections.abc import Callable

from celeriac import Celery
from tests.support.workers import WorkerProcess


def test_delay_runs_on_solo_worker_and_get_returns_value(
    redis_url: str, backend_url: str, worker_factory: Callable[..., WorkerProcess]
) -> None:
    worker_factory("core_tasks", "-P", "solo")
    client = Celery("client", broker=redis_url, backend=backend_url)
    result = client.send_task("core.add", (2, 3))
    assert result.get(timeout=10) == 5
    assert result.state == "SUCCESS"
