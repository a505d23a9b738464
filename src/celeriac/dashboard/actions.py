"""The actions, each a POST with the page's CSRF token: revoke, terminate, rate limit,
pool grow and shrink, shutdown, and requeue or purge dead letters. Each redirects back to
the page it came from with what it did."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..errors import CeleriacError
from .security import checked_form

if TYPE_CHECKING:
    from .state import DashboardState

Form = dict[str, str]


def _back(form: Form, default: str, message: str) -> RedirectResponse:
    target = form.get("next") or default
    if not target.startswith("/") or target.startswith("//"):
        target = default  # only back to a page of this dashboard
    sep = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{sep}done={quote(message)}", status_code=303)


def _need(form: Form, key: str, what: str) -> str:
    value = (form.get(key) or "").strip()
    if not value:
        raise HTTPException(400, f"{what} is missing: fill in {key!r} and submit again")
    return value


def routes(state: DashboardState) -> list[Route]:
    control = state.app.control

    def revoke(form: Form) -> RedirectResponse:
        task_id = _need(form, "task_id", "the task id")
        control.revoke(task_id)
        return _back(form, f"/tasks/{task_id}", f"revoked {task_id}")

    def terminate(form: Form) -> RedirectResponse:
        task_id = _need(form, "task_id", "the task id")
        control.revoke(task_id, terminate=True, signal=form.get("signal") or "SIGTERM")
        return _back(form, f"/tasks/{task_id}", f"terminated {task_id}")

    def rate_limit(form: Form) -> RedirectResponse:
        name = _need(form, "task_name", "the task name")
        worker = _need(form, "worker", "the worker")
        rate = (form.get("rate") or "").strip() or None
        control.rate_limit(name, rate, destination=[worker])
        return _back(form, "/cluster", f"rate limit of {name} on {worker}: {rate or 'none'}")

    def pool(grow: bool) -> Callable[[Form], RedirectResponse]:
        def resize(form: Form) -> RedirectResponse:
            worker = _need(form, "worker", "the worker")
            n = int(form.get("n") or 1)
            if grow:
                control.pool_grow(n, destination=[worker])
            else:
                control.pool_shrink(n, destination=[worker])
            word = "grew" if grow else "shrank"
            return _back(form, "/cluster", f"{word} the pool of {worker} by {n}")

        return resize

    def shutdown(form: Form) -> RedirectResponse:
        worker = _need(form, "worker", "the worker")
        control.shutdown(destination=[worker])
        return _back(form, "/cluster", f"asked {worker} to shut down")

    def requeue(queue: str, form: Form) -> RedirectResponse:
        task_id = form.get("task_id") or None
        moved = state.app.broker.requeue_dead(queue, task_id)
        return _back(form, "/queues", f"requeued {moved} message(s) to {queue}")

    def purge(queue: str, form: Form) -> RedirectResponse:
        removed = state.app.broker.purge_dead(queue)
        return _back(form, "/queues", f"purged {removed} dead letter(s) from {queue}")

    return [
        Route("/actions/revoke", _post(state, revoke), methods=["POST"]),
        Route("/actions/terminate", _post(state, terminate), methods=["POST"]),
        Route("/actions/rate-limit", _post(state, rate_limit), methods=["POST"]),
        Route("/actions/pool-grow", _post(state, pool(True)), methods=["POST"]),
        Route("/actions/pool-shrink", _post(state, pool(False)), methods=["POST"]),
        Route("/actions/shutdown", _post(state, shutdown), methods=["POST"]),
        Route("/queues/{queue}/dead/requeue", _dead_post(state, requeue), methods=["POST"]),
        Route("/queues/{queue}/dead/purge", _dead_post(state, purge), methods=["POST"]),
    ]


def _post(
    state: DashboardState, action: Callable[[Form], RedirectResponse]
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        form = await checked_form(request)
        try:
            response = await run_in_threadpool(action, form)
        except CeleriacError as exc:  # no remote control here, or the broker is down
            raise HTTPException(503, f"not done: {exc}") from None
        state.bump()
        return response

    return endpoint


def _dead_post(
    state: DashboardState, action: Callable[[str, Form], RedirectResponse]
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        form = await checked_form(request)
        try:
            response = await run_in_threadpool(action, request.path_params["queue"], form)
        except CeleriacError as exc:
            raise HTTPException(503, f"not done: {exc}") from None
        state.bump()
        return response

    return endpoint
