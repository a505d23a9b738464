"""The parts of ``self.request`` a worker reads from a message beyond its id and arguments,
laid out as a Celery worker lays them out (``celery.app.task.Context``)."""

from __future__ import annotations

from typing import Any

# what the protocol itself uses; anything else in the headers is the sender's own
_PROTOCOL_HEADERS = frozenset(
    {
        "lang",
        "task",
        "id",
        "shadow",
        "eta",
        "expires",
        "group",
        "group_index",
        "retries",
        "timelimit",
        "root_id",
        "parent_id",
        "argsrepr",
        "kwargsrepr",
        "origin",
        "ignore_result",
        "replaced_task_nesting",
        "stamped_headers",
        "stamps",
        "compression",
        "redelivered",
        "protocol",
        "chord",
        "callbacks",
        "errbacks",
        "chain",
        "utc",
        "taskset",
    }
)


def custom_headers(headers: dict[str, Any]) -> dict[str, Any]:
    """The headers the sender added itself (``apply_async(headers={...})``)."""
    if headers.keys() <= _PROTOCOL_HEADERS:  # the common case, checked in one set operation
        return {}
    return {key: value for key, value in headers.items() if key not in _PROTOCOL_HEADERS}


def delivery_info(properties: dict[str, Any], queue: str) -> dict[str, Any]:
    """Celery's ``delivery_info``: exchange, routing key, priority and redelivered (and the
    queue the worker took it from)."""
    info = dict(properties.get("delivery_info") or {})
    info.setdefault("exchange", "")
    info.setdefault("routing_key", queue)
    info["priority"] = properties.get("priority")
    info["redelivered"] = bool(info.get("redelivered"))
    info["queue"] = queue
    return info


def content_encoding(content_type: str) -> str:
    """The encoding a body of *content_type* travels in (the envelope's, not kept)."""
    return "binary" if _binary(content_type) else "utf-8"


def _binary(content_type: str) -> bool:
    return "pickle" in content_type or "msgpack" in content_type


_KEPT_ON_RETRY = ("replaced_task_nesting", "stamped_headers", "stamps")


def retry_headers(headers: dict[str, Any]) -> dict[str, Any]:
    """The headers a retry carries over: the sender's own, stamps and replace nesting."""
    kept = custom_headers(headers)
    for name in _KEPT_ON_RETRY:
        if headers.get(name):
            kept[name] = headers[name]
    stamped = headers.get("stamped_headers")
    if isinstance(stamped, list):  # each stamp also rides as a header of its own name
        for name in stamped:
            if isinstance(name, str) and name in headers:
                kept[name] = headers[name]
    return kept
