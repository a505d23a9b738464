"""The pages: cluster, queues (and dead letters), tasks and one task. Each page also
answers ``?fragment=1`` with just its live part, which the page's script swaps in."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import CeleriacError
from ..events.monitor import STATE_ORDER
from . import views

if TYPE_CHECKING:
    from .app import Renderer
    from .state import DashboardState

LIST_LIMIT = 200
DETAIL_LIMIT = 2_000  # characters of args, kwargs and result shown before "show whole"
FINISHED_WINDOW_S = 10.0


def _render(
    render: Renderer, request: Request, full: str, part: str, context: dict[str, Any]
) -> Response:
    fragment = request.query_params.get("fragment") == "1"
    return render.page(request, part if fragment else full, context)


def routes(state: DashboardState, render: Renderer) -> list[Route]:
    def cluster(request: Request) -> Response:
        import time

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
        return _render(render, request, "cluster.html", "_cluster.html", context)

    def queues(request: Request) -> Response:
        with state.lock:
            rows = [state.queues[name] for name in sorted(state.queues)]
        context = {"page": "queues", "fragment": "/queues?fragment=1", "queues": rows}
        return _render(render, request, "queues.html", "_queues.html", context)

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
        return _render(render, request, "tasks.html", "_tasks.html", context)

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
        return _render(render, request, "task.html", "_task.html", context)

    def dead(request: Request) -> Response:
        queue = request.path_params["queue"]
        broker = state.app.broker
        try:
            total, letters = broker.dead_letter_count(queue), broker.dead_letters(queue, LIST_LIMIT)
        except CeleriacError as exc:
            raise HTTPException(503, f"cannot read the dead letters of {queue!r}: {exc}") from None
        context = {"page": "queues", "queue": queue, "total": total, "letters": letters}
        return render.page(request, "dead.html", context)

    def dead_letter(request: Request) -> Response:
        from ..cli.dead_cmd import _pretty

        queue = request.path_params["queue"]
        index = int(request.path_params["index"])
        letters = state.app.broker.dead_letters(queue, index) if index >= 1 else []
        if index < 1 or index > len(letters):
            raise HTTPException(404, f"no dead letter number {index} in {queue!r}")
        letter = letters[index - 1]
        context = {
            "page": "queues",
            "queue": queue,
            "index": index,
            "letter": letter,
            "message": _pretty(letter.raw),
        }
        return render.page(request, "dead_letter.html", context)

    return [
        Route("/cluster", cluster),
        Route("/queues", queues),
        Route("/queues/{queue}/dead", dead),
        Route("/queues/{queue}/dead/{index:int}", dead_letter),
        Route("/tasks", tasks),
        Route("/tasks/{task_id}", task),
    ]
