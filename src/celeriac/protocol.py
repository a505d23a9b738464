"""Celery task protocol v2 over Redis: build the envelope a producer pushes, parse what a
worker pops.

The layout is the one in shared/spec/celery-wire-protocol.md (§2, §3): a JSON envelope whose
``body`` is base64 of the serialized ``[args, kwargs, embed]`` list.
"""

from __future__ import annotations

import base64
import binascii
import os
import socket
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from . import serialization
from .errors import InvalidMessage, SerializationError

Embed = dict[str, Any]
EMPTY_EMBED: Embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@dataclass(frozen=True, slots=True)
class TaskMessage:
    """One parsed task message: what the worker needs to run it."""

    task: str
    id: str
    args: list[Any]
    kwargs: dict[str, Any]
    embed: Embed
    headers: dict[str, Any]
    properties: dict[str, Any]
    content_type: str = serialization.JSON

    @property
    def retries(self) -> int:
        value = self.headers.get("retries") or 0
        return value if isinstance(value, int) else 0

    @property
    def eta(self) -> datetime | None:
        return parse_time(self.headers.get("eta"))

    @property
    def expires(self) -> datetime | None:
        return parse_time(self.headers.get("expires"))

    @property
    def timelimit(self) -> tuple[float | None, float | None]:
        value = self.headers.get("timelimit")
        if isinstance(value, (list, tuple)) and len(value) == 2:
            hard, soft = value
            return (_number_or_none(hard), _number_or_none(soft))
        return (None, None)

    @property
    def priority(self) -> int:
        value = self.properties.get("priority") or 0
        return value if isinstance(value, int) else 0


@dataclass(frozen=True, slots=True)
class SendOptions:
    """What a producer chose for one message beyond the task's arguments."""

    queue: str = "celery"
    exchange: str = ""
    routing_key: str | None = None
    priority: int = 0
    eta: datetime | None = None
    expires: datetime | None = None
    retries: int = 0
    timelimit: tuple[float | None, float | None] = (None, None)
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    group_index: int | None = None
    ignore_result: bool = False
    shadow: str | None = None
    reply_to: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)
    callbacks: list[dict[str, Any]] | None = None
    errbacks: list[dict[str, Any]] | None = None
    chain: list[dict[str, Any]] | None = None
    chord: dict[str, Any] | None = None


def _number_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def parse_time(value: Any) -> datetime | None:
    """ISO-8601 text (Celery's eta/expires) to an aware datetime; naive means UTC."""
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def new_id() -> str:
    return str(uuid.uuid4())


_ORIGIN = f"gen{os.getpid()}@{socket.gethostname()}"


def origin() -> str:
    """The ``origin`` header: ``gen<pid>@<host>``, recomputed after a fork."""
    global _ORIGIN
    pid = os.getpid()
    if not _ORIGIN.startswith(f"gen{pid}@"):
        _ORIGIN = f"gen{pid}@{socket.gethostname()}"
    return _ORIGIN


def _safe_repr(value: Any, limit: int = 1024) -> str:
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not stop the send
        text = f"<{type(value).__name__} with a failing repr>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def build_envelope(
    task: str,
    task_id: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    options: SendOptions,
    *,
    content_type: str = serialization.JSON,
) -> bytes:
    """The JSON envelope a Celery 5 worker accepts, as bytes ready for LPUSH."""
    embed = {
        "callbacks": options.callbacks,
        "errbacks": options.errbacks,
        "chain": options.chain,
        "chord": options.chord,
    }
    body = serialization.dumps([list(args), dict(kwargs), embed], content_type)
    headers: dict[str, Any] = {
        "lang": "py",
        "task": task,
        "id": task_id,
        "shadow": options.shadow,
        "eta": options.eta.isoformat() if options.eta else None,
        "expires": options.expires.isoformat() if options.expires else None,
        "group": options.group,
        "group_index": options.group_index,
        "retries": options.retries,
        "timelimit": list(options.timelimit),
        "root_id": options.root_id or task_id,
        "parent_id": options.parent_id,
        "argsrepr": _safe_repr(tuple(args)),
        "kwargsrepr": _safe_repr(dict(kwargs)),
        "origin": origin(),
        "ignore_result": options.ignore_result,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    if options.headers:
        headers.update(options.headers)
    envelope = {
        "body": base64.b64encode(body).decode("ascii"),
        "content-encoding": "utf-8" if content_type == serialization.JSON else "binary",
        "content-type": content_type,
        "headers": headers,
        "properties": {
            "correlation_id": task_id,
            "reply_to": options.reply_to or task_id,
            "delivery_mode": 2,
            "delivery_info": {
                "exchange": options.exchange,
                "routing_key": options.routing_key or options.queue,
            },
            "priority": options.priority,
            "body_encoding": "base64",
            "delivery_tag": new_id(),
        },
    }
    try:
        return orjson.dumps(envelope)
    except TypeError as exc:  # a custom header value
        raise SerializationError(f"message headers are not JSON serializable: {exc}") from exc


def _require(condition: bool, reason: str, task_id: str | None = None) -> None:
    if not condition:
        raise InvalidMessage(reason, task_id=task_id)


def parse_envelope(raw: bytes | str, accept: Collection[str] = ("json",)) -> TaskMessage:
    """Parse one queue item; anything that is not a runnable v2 task raises InvalidMessage.

    The error carries the task id whenever the headers held one, so the worker can store
    a FAILURE that the caller's ``get()`` returns.
    """
    try:
        envelope = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidMessage(f"envelope is not valid JSON ({exc})") from None
    _require(isinstance(envelope, dict), "envelope is not a JSON object")
    headers = envelope.get("headers")
    properties = envelope.get("properties")
    _require(isinstance(properties, dict), "envelope has no 'properties' object")
    _require(isinstance(headers, dict), "envelope has no 'headers' object")
    task_id = headers.get("id")
    task_id = task_id if isinstance(task_id, str) and task_id else None
    task = headers.get("task")
    _require(
        isinstance(task, str) and bool(task),
        "headers have no 'task' name (protocol v1 or not a task message)",
        task_id,
    )
    _require(task_id is not None, "headers have no 'id'")
    assert isinstance(task, str) and task_id is not None
    _require(
        isinstance(properties.get("delivery_info") or {}, dict),
        "properties.delivery_info is not an object",
        task_id,
    )
    content_type = envelope.get("content-type")
    _require(isinstance(content_type, str), "envelope has no 'content-type'", task_id)
    assert isinstance(content_type, str)
    body = _decode_body(envelope.get("body"), properties.get("body_encoding"), task_id)
    try:
        decoded = serialization.loads(body, content_type, accept)
    except SerializationError as exc:
        raise InvalidMessage(f"body cannot be decoded: {exc}", task_id=task_id) from None
    args, kwargs, embed = _split_body(decoded, task_id)
    return TaskMessage(task, task_id, args, kwargs, embed, headers, properties, content_type)


def _decode_body(body: Any, encoding: Any, task_id: str | None) -> bytes:
    _require(isinstance(body, str), "envelope 'body' is not a string", task_id)
    assert isinstance(body, str)
    if encoding == "base64":
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidMessage("body is not valid base64", task_id=task_id) from None
    _require(encoding in (None, "utf-8"), f"unknown body_encoding {encoding!r}", task_id)
    return body.encode("utf-8", "surrogatepass")


def _split_body(decoded: Any, task_id: str) -> tuple[list[Any], dict[str, Any], Embed]:
    _require(
        isinstance(decoded, list) and len(decoded) == 3,
        "body is not the 3-element list [args, kwargs, embed]",
        task_id,
    )
    args, kwargs, embed = decoded
    _require(isinstance(args, list), f"args is {type(args).__name__}, not a list", task_id)
    _require(isinstance(kwargs, dict), f"kwargs is {type(kwargs).__name__}, not a dict", task_id)
    if embed is None:
        embed = dict(EMPTY_EMBED)
    _require(isinstance(embed, dict), f"embed is {type(embed).__name__}, not a dict", task_id)
    return args, kwargs, embed


def mark_redelivered(raw: bytes | str) -> bytes:
    """The envelope with ``redelivered`` set, as kombu writes it when restoring."""
    envelope = orjson.loads(raw)
    envelope.setdefault("headers", {})["redelivered"] = True
    envelope.setdefault("properties", {}).setdefault("delivery_info", {})["redelivered"] = True
    return orjson.dumps(envelope)
