"""The queues page (lengths per priority, consumers, rate) and the dead letters of each
queue (list and inspect; requeue and purge are actions)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import CeleriacError
from .pages import LIST_LIMIT, render_page

if TYPE_CHECKING:
    from .app import Renderer
    from .state import DashboardState


def routes(state: DashboardState, render: Renderer) -> list[Route]:
    def queues(request: Request) -> Response:
        with state.lock:
            rows = [state.queues[name] for name in sorted(state.queues)]
        context = {"page": "queues", "fragment": "/queues?fragment=1", "queues": rows}
        return render_page(render, request, "queues.html", "_queues.html", context)

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
        Route("/queues", queues),
        Route("/queues/{queue}/dead", dead),
        Route("/queues/{queue}/dead/{index:int}", dead_letter),
    ]
