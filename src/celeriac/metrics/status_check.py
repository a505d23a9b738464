"""``celeriac status --exit-code``: the same question as ``/readyz``, asked over the broker.

Every worker answers the ``readiness`` inspect command (``celeriac.metrics.progress``).
A worker started without ``--metrics-port`` does not measure its loop; its answer to ping
is then all there is, and it counts as ready. So does a Celery worker, which does not know
the command.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _merged(replies: Any) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for item in replies or []:
        if isinstance(item, dict):
            merged.update(item)
    return merged


def not_ready(pings: Any, readiness: Any, destination: Sequence[str] | None) -> list[str]:
    """What keeps the exit code from being 0: nodes named with -d that did not answer, and
    nodes that say they are not ready (with their reasons)."""
    answered = _merged(pings)
    problems = [
        f"{node}: no answer within the timeout"
        for node in destination or ()
        if node not in answered
    ]
    if not answered and not destination:
        problems.append("no worker answered within the timeout")
    for node, body in sorted(_merged(readiness).items()):
        if isinstance(body, dict) and body.get("ready") is False:
            reasons = "; ".join(str(r) for r in body.get("reasons") or ()) or "no reason given"
            problems.append(f"{node}: not ready: {reasons}")
    return problems
