"""What a task's request holds, as JSON: shared by the celeriac and Celery task modules of the
task-semantics tests, so both sides report the same fields the same way."""

from __future__ import annotations

from typing import Any

FIELDS = [
    "id",
    "task",
    "args",
    "kwargs",
    "retries",
    "is_eager",
    "eta",
    "expires",
    "headers",
    "delivery_info",
    "reply_to",
    "correlation_id",
    "root_id",
    "parent_id",
    "group",
    "group_index",
    "origin",
    "hostname",
    "callbacks",
    "errbacks",
    "chain",
    "chord",
    "timelimit",
    "time_limit",
    "soft_time_limit",
    "ignore_result",
    "called_directly",
    "properties",
    "replaced_task_nesting",
    "stamps",
    "stamped_headers",
    "argsrepr",
    "kwargsrepr",
    "shadow",
]


def request_fields(task: Any) -> dict[str, Any]:
    """The request as JSON: each field Celery's Context has, and the custom header."""
    request = task.request
    out = {name: getattr(request, name, "<missing>") for name in FIELDS}
    out["timelimit"] = list(out["timelimit"]) if out["timelimit"] else out["timelimit"]
    out["custom_attribute"] = getattr(request, "custom", "<missing>")
    return out
