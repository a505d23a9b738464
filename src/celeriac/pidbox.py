"""Celery's remote-control wire format on Redis (spec §10): broadcast requests on the
``/{db}.celery.pidbox`` channel, replies pushed to the caller's reply list."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from .brokers.base import PRIORITY_SEP

EXCHANGE = "celery.pidbox"
REPLY_EXCHANGE = "reply.celery.pidbox"


def channel(db: int) -> str:
    return f"/{db}.{EXCHANGE}"


def reply_queue(oid: str) -> str:
    return f"{oid}.{REPLY_EXCHANGE}"


def reply_binding(oid: str) -> str:
    """The member a caller adds to ``_kombu.binding.reply.celery.pidbox``."""
    return f"{oid}{PRIORITY_SEP}{PRIORITY_SEP}{reply_queue(oid)}"


def _envelope(
    body: Any, headers: Mapping[str, Any], exchange: str, routing_key: str, delivery_mode: int
) -> bytes:
    return orjson.dumps(
        {
            "body": base64.b64encode(orjson.dumps(body)).decode("ascii"),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": dict(headers),
            "properties": {
                "delivery_mode": delivery_mode,
                "delivery_info": {"exchange": exchange, "routing_key": routing_key},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    )


def request(
    method: str,
    arguments: Mapping[str, Any],
    destination: list[str] | None = None,
    reply_oid: str | None = None,
    timeout_s: float = 1.0,
) -> tuple[bytes, str | None]:
    """The broadcast envelope, and the ticket replies will carry (None: no reply wanted)."""
    body: dict[str, Any] = {
        "method": method,
        "arguments": dict(arguments),
        "destination": destination,
        "pattern": None,
        "matcher": None,
    }
    ticket = None
    if reply_oid is not None:
        ticket = str(uuid.uuid4())
        body["ticket"] = ticket
        body["reply_to"] = {"exchange": REPLY_EXCHANGE, "routing_key": reply_oid}
    headers = {"clock": 1, "expires": time.time() + timeout_s}
    return _envelope(body, headers, EXCHANGE, "", 2), ticket


def reply(nodename: str, result: Any, ticket: str, routing_key: str) -> bytes:
    return _envelope(
        {nodename: result}, {"ticket": ticket, "clock": 1}, REPLY_EXCHANGE, routing_key, 1
    )


def decode(raw: bytes | str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(body, headers) of a pidbox envelope; ValueError when it is not one."""
    envelope = orjson.loads(raw)
    if not isinstance(envelope, dict):
        raise ValueError("pidbox message is not a JSON object")
    content_type = envelope.get("content-type")
    if content_type not in (None, "application/json", "json"):
        # never unpickled (nor anything else): remote control is JSON only, as Celery's
        # default accept_content has it
        raise ValueError(
            f"control message of content type {content_type!r} refused; celeriac's remote "
            f"control reads JSON only (send it with accept_content/serializer 'json')"
        )
    body = envelope.get("body")
    if isinstance(body, str):
        encoding = (envelope.get("properties") or {}).get("body_encoding")
        body = orjson.loads(base64.b64decode(body) if encoding == "base64" else body)
    if not isinstance(body, dict):
        raise ValueError("pidbox body is not a JSON object")
    headers = envelope.get("headers")
    return body, headers if isinstance(headers, dict) else {}
