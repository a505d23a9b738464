"""The tasks page (a searchable list) and one task's page (everything about it, and its
chain, group or chord drawn as a tree)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..events.monitor import STATE_ORDER
from . import views
from .pages import LIST_LIMIT, render_page

if TYPE_CHECKING:
    from .app import Renderer
    from .state import DashboardState

DETAIL_LIMIT = 2_000  # characters of args, kwargs and result shown before "show whole"


def routes(state: DashboardState, render: Renderer) -> list[Route]:
    def tasks(request: Request) -> Response:
        q = request.query_params.get("q", "")[:200]
        wanted = request.query_params.get("state", "")
        wanted = wanted if wanted in STATE_ORDER else ""
        context = {
            "page": "tasks",
            "fragment": "/tasks?" + urlencode({"fragment": 1, "q": q, "state": wanted}),
            "tasks": state.search(q, wanted, LIST_LIMIT),
            "q": q,
            "state_filter": wanted,
            "states": STATE_ORDER,
            "where": state.history().where,
            "max_tasks": state.max_tasks,
        }
        return render_page(render, request, "tasks.html", "_tasks.html", context)

    def task(request: Request) -> Response:
        task_id = request.path_params["task_id"]
        record = state.task(task_id)
        if record is None:
            raise HTTPException(
                404,
                f"no task {task_id!r} is known here: it may never have run while the "
                "dashboard watched, or it was forgotten (dashboard_max_tasks). Search on Tasks.",
            )
        full = request.query_params.get("full") == "1"
        limit = 0 if full else DETAIL_LIMIT
        cut_short = any(
            len(str(record.get(k) or "")) > DETAIL_LIMIT for k in ("args", "kwargs", "result")
        )
        suffix = "&full=1" if full else ""
        context = {
            "page": "tasks",
            "fragment": f"/tasks/{task_id}?fragment=1{suffix}",
            "t": record,
            "limit": limit,
            "full": full,
            "cut_short": cut_short,
            "family": views.family_nodes(state.family(record), task_id),
        }
        return render_page(render, request, "task.html", "_task.html", context)

    return [Route("/tasks", tasks), Route("/tasks/{task_id}", task)]
