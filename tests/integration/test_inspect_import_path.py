"""``celeriac.app.control.Inspect`` built as Celery scripts build it (``Inspect(app=app)``)
asks a real worker on Redis."""

from __future__ import annotations

from collections.abc import Callable

from celeriac import Celery
from celeriac.app.control import Control, Inspect, flatten_reply
from tests.support.workers import WorkerProcess

Factory = Callable[..., WorkerProcess]


def test_inspect_made_from_the_app_answers_ping_and_registered(
    worker_factory: Factory, redis_url: str, backend_url: str
) -> None:
    worker_factory("reliable_tasks", "-P", "solo", "-n", "inspected@%h")
    client = Celery("client", broker=redis_url, backend=backend_url, set_as_current=False)
    try:
        pings = Inspect(app=client, timeout=2).ping() or {}
        assert [answer for name, answer in pings.items() if name.startswith("inspected@")] == [
            {"ok": "pong"}
        ]
        registered = Control(client).inspect(timeout=2, limit=1).registered() or {}
        assert any("rel.count" in tasks for tasks in registered.values())
    finally:
        client.close()


def test_flatten_reply_merges_the_answers_of_each_node() -> None:
    replies = [{"a@h": {"ok": "pong"}}, {"b@h": {"ok": "pong"}}]
    assert flatten_reply(replies) == {"a@h": {"ok": "pong"}, "b@h": {"ok": "pong"}}
