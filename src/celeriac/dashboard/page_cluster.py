"""The cluster page: every worker with its pool, counts and the seed's process tree."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..events.monitor import STATE_ORDER
from . import views
from .pages import render_page

if TYPE_CHECKING:
    from .app import Renderer
    from .state import DashboardState

FINISHED_WINDOW_S = 10.0


def routes(state: DashboardState, render: Renderer) -> list[Route]:
    def cluster(request: Request) -> Response:
        now = time.time()
        workers = [views.worker_view(row) for row in state.alive_workers(now)]
        with state.lock:
            counts = {s: 0 for s in STATE_ORDER}
            finished = 0
            for record in state.tasks.values():
                counts[record["state"]] = counts.get(record["state"], 0) + 1
                done = record.get("succeeded_at") or record.get("failed_at")
                if done and now - float(done) <= FINISHED_WINDOW_S:
                    finished += 1
        context = {
            "page": "cluster",
            "fragment": "/cluster?fragment=1",
            "workers": workers,
            "counts": {k: v for k, v in counts.items() if v},
            "throughput": finished,
        }
        return render_page(render, request, "cluster.html", "_cluster.html", context)

    return [Route("/cluster", cluster)]
