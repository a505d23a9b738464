"""The dashboard's task history in a Redis result backend: kept across a restart of the
dashboard and bounded by dashboard_max_tasks (the oldest go first)."""

from __future__ import annotations

import time

from celeriac import Celery
from celeriac.dashboard.state import DashboardState


def test_redis_history_survives_a_restart_bounded(redis_url: str, backend_url: str) -> None:
    app = Celery("h", broker=redis_url, backend=backend_url)
    app.conf.dashboard_max_tasks = 3
    try:
        first = DashboardState(app)
        for i in range(5):
            base = {"uuid": f"h-{i}", "hostname": "w@host", "timestamp": time.time() + i}
            first.feed({**base, "type": "task-received", "name": f"job{i}", "args": "(1,)"})
            first.feed({**base, "type": "task-succeeded", "result": str(i), "runtime": 0.1})
        first.flush()
        again = DashboardState(app)
        again.history()
        assert list(again.tasks) == ["h-2", "h-3", "h-4"]
        assert again.tasks["h-4"]["state"] == "SUCCESS" and again.tasks["h-4"]["result"] == "4"
        assert app.backend.client.hlen("celeriac:dashboard:tasks") == 3
    finally:
        app.close()
