"""What every page shares: the full page, or only its live part for ``?fragment=1`` (which
the page's script swaps in when the live stream says something changed)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from .app import Renderer

LIST_LIMIT = 200


def render_page(
    render: Renderer, request: Request, full: str, part: str, context: dict[str, Any]
) -> Response:
    fragment = request.query_params.get("fragment") == "1"
    return render.page(request, part if fragment else full, context)
