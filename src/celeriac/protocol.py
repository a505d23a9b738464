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
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from . import protocol_v1, serialization
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


_VARIANT = dict(zip("0123456789abcdef", "89ab89ab89ab89ab", strict=False))
_IDS: list[str] = []  # random ids made ahead, 64 at a time; list.pop is atomic under the GIL
_IDS_AHEAD = 64


def _refill_ids() -> None:
    h = os.urandom(16 * _IDS_AHEAD).hex()
    v = _VARIANT
    _IDS.extend(
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-4{h[i + 13 : i + 16]}-"
        f"{v[h[i + 16]]}{h[i + 17 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 32 * _IDS_AHEAD, 32)
    )


def new_id() -> str:
    """A random (version 4) UUID as text, like ``str(uuid.uuid4())`` at a fraction of its
    cost: the random bytes are read 64 ids at a time."""
    while True:  # other threads may take the fresh ones first: refill until one is ours
        try:
            return _IDS.pop()
        except IndexError:
            _refill_ids()


_ORIGIN = f"gen{os.getpid()}@{socket.gethostname()}"


def origin() -> str:
    """The ``origin`` header: ``gen<pid>@<host>``, recomputed after a fork."""
    return _ORIGIN


def _after_fork() -> None:
    global _ORIGIN
    _IDS.clear()  # a child must never hand out the ids its parent will
    _ORIGIN = f"gen{os.getpid()}@{socket.gethostname()}"


os.register_at_fork(after_in_child=_after_fork)


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
    return EnvelopeFactory(task, options, content_type).build(task_id, args, kwargs)


class EnvelopeFactory:
    """Envelopes for calls of one task that share their send options.

    Everything that does not depend on the call (most headers, the properties) is worked out
    once; :meth:`build` adds the id, the body and the reprs. The bulk path
    (``Task.delay_many``) builds thousands of envelopes with one factory.
    """

    __slots__ = (
        "_head",
        "_props",
        "_reply",
        "_root",
        "content_type",
        "embed",
        "encoding",
        "extra",
        "headers",
        "options",
        "route",
    )

    def __init__(
        self, task: str, options: SendOptions, content_type: str = serialization.JSON
    ) -> None:
        self.options = options
        self.content_type = content_type
        self.encoding = "utf-8" if content_type == serialization.JSON else "binary"
        self.embed = {
            "callbacks": options.callbacks,
            "errbacks": options.errbacks,
            "chain": options.chain,
            "chord": options.chord,
        }
        self.headers: dict[str, Any] = {
            "lang": "py",
            "task": task,
            "id": None,
            "shadow": options.shadow,
            "eta": options.eta.isoformat() if options.eta else None,
            "expires": options.expires.isoformat() if options.expires else None,
            "group": options.group,
            "group_index": options.group_index,
            "retries": options.retries,
            "timelimit": list(options.timelimit),
            "root_id": None,
            "parent_id": options.parent_id,
            "argsrepr": None,
            "kwargsrepr": None,
            "origin": None,
            "ignore_result": options.ignore_result,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
        }
        self.extra = dict(options.headers) if options.headers else None
        self.route = {
            "exchange": options.exchange,
            "routing_key": options.routing_key or options.queue,
        }
        # the same JSON as the dict, with the parts that never change serialized once
        static = {k: v for k, v in self.headers.items() if k not in _PER_CALL_HEADERS}
        props = {
            "delivery_mode": 2,
            "delivery_info": self.route,
            "priority": options.priority,
            "body_encoding": "base64",
        }
        try:
            self._head = (
                b'",'
                + orjson.dumps({"content-encoding": self.encoding, "content-type": content_type})[
                    1:-1
                ]
                + b',"headers":{'
                + orjson.dumps(static)[1:-1]
                + b',"id":'
            )
            self._props = b"," + orjson.dumps(props)[1:-1] + b',"delivery_tag":"'
            self._root = orjson.dumps(options.root_id) if options.root_id else None
            self._reply = orjson.dumps(options.reply_to) if options.reply_to else None
        except TypeError as exc:
            raise SerializationError(f"message headers are not JSON serializable: {exc}") from exc

    def build(self, task_id: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> bytes:
        if self.extra:
            return self._build_dict(task_id, args, kwargs)
        body = serialization.dumps(
            [
                args if isinstance(args, (list, tuple)) else list(args),
                kwargs if type(kwargs) is dict else dict(kwargs),
                self.embed,
            ],
            self.content_type,
        )
        tid = orjson.dumps(task_id)
        return b"".join(
            (
                b'{"body":"',
                base64.b64encode(body),
                self._head,
                tid,
                b',"root_id":',
                self._root or tid,
                b',"argsrepr":',
                orjson.dumps(_safe_repr(tuple(args))),
                b',"kwargsrepr":',
                orjson.dumps(_safe_repr(dict(kwargs))) if kwargs else b'"{}"',
                b',"origin":',
                orjson.dumps(_ORIGIN),
                b'},"properties":{"correlation_id":',
                tid,
                b',"reply_to":',
                self._reply or tid,
                self._props,
                new_id().encode(),
                b'"}}',
            )
        )

    def _build_dict(self, task_id: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> bytes:
        """The general way, for messages with headers of their own (which may override any)."""
        options = self.options
        body = serialization.dumps([list(args), dict(kwargs), self.embed], self.content_type)
        headers = self.headers.copy()
        headers["id"] = task_id
        headers["root_id"] = options.root_id or task_id
        headers["argsrepr"] = _safe_repr(tuple(args))
        headers["kwargsrepr"] = _safe_repr(dict(kwargs))
        headers["origin"] = origin()
        headers["stamps"] = {}
        if self.extra:
            headers.update(self.extra)
        envelope = {
            "body": base64.b64encode(body).decode("ascii"),
            "content-encoding": self.encoding,
            "content-type": self.content_type,
            "headers": headers,
            "properties": {
                "correlation_id": task_id,
                "reply_to": options.reply_to or task_id,
                "delivery_mode": 2,
                "delivery_info": self.route,
                "priority": options.priority,
                "body_encoding": "base64",
                "delivery_tag": new_id(),
            },
        }
        try:
            return orjson.dumps(envelope)
        except TypeError as exc:  # a custom header value
            raise SerializationError(f"message headers are not JSON serializable: {exc}") from exc


_PER_CALL_HEADERS = frozenset({"id", "root_id", "argsrepr", "kwargsrepr", "origin"})


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
    # a hand-written producer may leave out properties (the broker gave it a delivery tag)
    properties = envelope.get("properties")
    if properties is None:
        properties = {}
    _require(isinstance(properties, dict), "envelope 'properties' is not an object")
    _require(isinstance(headers, dict), "envelope has no 'headers' object")
    task_id = headers.get("id")
    task_id = task_id if isinstance(task_id, str) and task_id else None
    task = headers.get("task")
    if not (isinstance(task, str) and task) and task_id is None:
        return _parse_v1(envelope, headers, properties, accept)
    _require(isinstance(task, str) and bool(task), "headers have no 'task' name", task_id)
    _require(task_id is not None, "headers have no 'id'")
    assert isinstance(task, str) and task_id is not None
    _require(
        isinstance(properties.get("delivery_info") or {}, dict),
        "properties.delivery_info is not an object",
        task_id,
    )
    content_type = _content_type(envelope)
    _require(isinstance(content_type, str), "envelope 'content-type' is not a string", task_id)
    assert isinstance(content_type, str)
    body = _decode_body(envelope.get("body"), properties.get("body_encoding"), task_id)
    try:
        decoded = serialization.loads(body, content_type, accept)
    except SerializationError as exc:
        raise InvalidMessage(f"body cannot be decoded: {exc}", task_id=task_id) from None
    args, kwargs, embed = _split_body(decoded, task_id)
    return TaskMessage(task, task_id, args, kwargs, embed, headers, properties, content_type)


def _parse_v1(
    envelope: dict[str, Any],
    headers: dict[str, Any],
    properties: dict[str, Any],
    accept: Collection[str],
) -> TaskMessage:
    """A message with no task header: Celery's protocol 1 if its body says so."""
    content_type = _content_type(envelope)
    body = envelope.get("body")
    decoded: Any = None
    if isinstance(content_type, str) and isinstance(body, str):
        try:
            raw = _decode_body(body, properties.get("body_encoding"), None)
            decoded = serialization.loads(raw, content_type, accept)
        except (InvalidMessage, SerializationError):
            decoded = None
    if not protocol_v1.is_v1_body(decoded):
        raise InvalidMessage(
            "headers have no 'task' name and the body is not a protocol 1 request "
            "(not a task message)"
        )
    assert isinstance(content_type, str)
    _require(
        isinstance(properties.get("delivery_info") or {}, dict),
        "properties.delivery_info is not an object",
        decoded["id"],
    )
    args, kwargs, embed, v2_headers = protocol_v1.headers_and_embed(decoded, headers)
    return TaskMessage(
        v2_headers["task"],
        v2_headers["id"],
        args,
        kwargs,
        embed,
        v2_headers,
        properties,
        content_type,
    )


def _content_type(envelope: dict[str, Any]) -> Any:
    """The envelope's content type; JSON when a hand-written producer left it out (the only
    type celeriac accepts by default, and still checked against ``accept_content``)."""
    content_type = envelope.get("content-type")
    return serialization.JSON if content_type is None else content_type


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
    if type(args) is list and type(kwargs) is dict and type(embed) is dict:
        return args, kwargs, embed  # the common case: nothing to explain
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
