"""The Starlette application: pages, actions, the live stream, ``/metrics`` and static
assets, behind the auth and CSRF guard."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ..metrics.server import render_metrics
from ..urls import safe_url
from . import actions, page_cluster, page_queues, page_tasks, views
from .security import Auth, Guard
from .state import DashboardState

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
STREAM_TICK_S = 0.2
KEEPALIVE_S = 10.0


def templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,  # every value escaped, in every template
        finalize=views.mask,  # and masked when it looks like a secret
        undefined=jinja2.ChainableUndefined,
    )
    env.filters.update(
        cut=views.cut,
        clock=views.clock,
        stamp=views.stamp,
        seconds=views.seconds,
        place=views.place,
    )
    return Jinja2Templates(env=env)


class Renderer:
    def __init__(self, state: DashboardState) -> None:
        self.state = state
        self.templates = templates()

    def page(
        self, request: Request, name: str, context: dict[str, Any], status_code: int = 200
    ) -> HTMLResponse:
        base = {
            "state": self.state,
            "now": time.time(),
            "broker": safe_url(self.state.app.broker_url),
            "csrf_token": request.scope.get("state", {}).get("csrf", ""),
            "message": request.query_params.get("done"),
            "fragment": None,
            "page": "",
        }
        response = self.templates.TemplateResponse(
            request, name, {**base, **context}, status_code=status_code
        )
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
            "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        )
        return response


def create_app(state: DashboardState, auth: Auth | None = None, start: bool = True) -> Starlette:
    """The dashboard over *state* (whose threads start with the app when *start*)."""
    render = Renderer(state)

    async def stream(request: Request) -> StreamingResponse:
        async def beats() -> AsyncIterator[str]:
            seen = -1
            quiet_since = time.monotonic()
            yield "retry: 1000\n\n"
            while not await request.is_disconnected():
                if state.version != seen:
                    seen = state.version
                    quiet_since = time.monotonic()
                    yield f"data: {seen}\n\n"
                elif time.monotonic() - quiet_since > KEEPALIVE_S:
                    quiet_since = time.monotonic()
                    yield ": keepalive\n\n"
                await asyncio.sleep(STREAM_TICK_S)

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(beats(), media_type="text/event-stream", headers=headers)

    def metrics(request: Request) -> Response:
        body, content_type = render_metrics(state.registry)
        return Response(body, media_type=content_type)

    async def on_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            status, detail = exc.status_code, str(exc.detail)
        else:
            logger.exception("dashboard: %s %s failed", request.method, request.url.path)
            status, detail = 500, "the dashboard failed to draw this page; its log says why"
        context = {"status": status, "detail": detail}
        return render.page(request, "error.html", context, status_code=status)

    routes = [
        Route("/", lambda request: RedirectResponse("/cluster", 303)),
        *page_cluster.routes(state, render),
        *page_queues.routes(state, render),
        *page_tasks.routes(state, render),
        *actions.routes(state),
        Route("/stream", stream),
        Route("/metrics", metrics),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Route("/healthz", lambda request: Response("ok\n", media_type="text/plain")),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]

    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if start:
            state.start()
        try:
            yield
        finally:
            if start:
                await asyncio.to_thread(state.stop)

    return Starlette(
        routes=routes,
        middleware=[Middleware(Guard, auth=auth)],
        exception_handlers={HTTPException: on_error, Exception: on_error},
        lifespan=_lifespan(lifespan),
    )


def _lifespan(function: Any) -> Any:
    from contextlib import asynccontextmanager

    return asynccontextmanager(function)
