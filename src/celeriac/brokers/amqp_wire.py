"""How a task message lies on AMQP 0.9.1, and how an AMQP URL names a RabbitMQ node.

On Redis a message is one JSON envelope (kombu's virtual transport). On AMQP the same parts
travel natively: the body as the message body, the task headers as AMQP headers, and
``content_type``, ``content_encoding``, ``correlation_id``, ``reply_to``, ``delivery_mode``
and ``priority`` as AMQP properties, as a Celery client writes them. The worker reads every
message as an envelope, so a delivery is turned back into one on arrival.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson

from ..errors import ConfigurationError
from ..urls import safe_url

AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
DEFAULT_PORT = 5672
DEFAULT_TLS_PORT = 5671
DEAD_PREFIX = "celeriac.dead."  # the same names as on Redis: ``celeriac dead`` reads both
REASON_HEADER = "x-celeriac-reason"
DEAD_AT_HEADER = "x-celeriac-dead-at"
# properties copied between the envelope and the AMQP message, by their AMQP names
_PROPERTIES = ("correlation_id", "reply_to", "priority", "delivery_mode", "expiration")


@dataclass(frozen=True)
class AmqpTarget:
    """Where to connect: what ``amqp.Connection`` needs, and the URL to show (no password)."""

    host: str
    port: int
    userid: str
    password: str
    virtual_host: str
    tls: ssl.SSLContext | dict[str, Any] | bool
    shown: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_url(url: str, use_ssl: Any = None) -> AmqpTarget:
    """Read ``amqp://user:password@host:port/vhost`` as kombu does: guest/guest on localhost
    when left out, vhost ``/`` for an empty path (``//`` and ``%2F`` also name ``/``)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(
            f"broker URL {safe_url(url)} cannot be read ({exc}); write it as "
            f"amqp://user:password@host:5672/vhost"
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in AMQP_SCHEMES:
        raise ConfigurationError(f"{safe_url(url)} is not an amqp://, amqps:// or pyamqp:// URL")
    tls: Any = scheme == "amqps" or bool(use_ssl)
    if tls and isinstance(use_ssl, Mapping) and use_ssl:
        tls = dict(use_ssl)
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    vhost = unquote(path) or "/"
    query = dict(parse_qsl(parts.query))
    return AmqpTarget(
        host=parts.hostname or "localhost",
        port=port or (DEFAULT_TLS_PORT if tls else DEFAULT_PORT),
        userid=unquote(parts.username) if parts.username else "guest",
        password=unquote(parts.password) if parts.password else "guest",
        virtual_host=vhost,
        tls=tls,
        shown=safe_url(url),
        options=query,
    )


def _as_text(value: Any) -> Any:
    """AMQP header values as JSON can hold them (py-amqp may give bytes, Decimal, datetime)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} in an AMQP header")


def to_amqp(envelope: bytes) -> tuple[bytes, dict[str, Any]]:
    """(body, AMQP properties with ``application_headers``) for one JSON envelope."""
    parsed = orjson.loads(envelope)
    if not isinstance(parsed, dict):
        raise ValueError("the envelope is not a JSON object")
    properties = parsed.get("properties") or {}
    body = parsed.get("body", "")
    if isinstance(body, str):
        if properties.get("body_encoding") == "base64":
            try:
                raw = base64.b64decode(body)
            except (binascii.Error, ValueError) as exc:
                raise ValueError("the envelope's body is not valid base64") from exc
        else:
            raw = body.encode("utf-8", "surrogatepass")
    else:
        raw = orjson.dumps(body)
    amqp_props: dict[str, Any] = {
        "content_type": parsed.get("content-type") or "application/json",
        "content_encoding": parsed.get("content-encoding") or "utf-8",
        "application_headers": parsed.get("headers") or {},
        "delivery_mode": 2,
    }
    for name in _PROPERTIES:
        value = properties.get(name)
        if value is not None and value != "":
            amqp_props[name] = value
    if "priority" in amqp_props:
        amqp_props["priority"] = max(0, min(255, int(amqp_props["priority"])))
    return raw, amqp_props


def to_envelope(
    body: bytes,
    properties: Mapping[str, Any],
    delivery_info: Mapping[str, Any],
    receipt: str,
) -> bytes:
    """The JSON envelope the worker reads, for one AMQP delivery (any body, any headers:
    what is wrong in them is for the parser to report)."""
    headers = properties.get("application_headers") or {}
    props: dict[str, Any] = {
        "body_encoding": "base64",
        "delivery_tag": receipt,
        "delivery_info": {
            "exchange": delivery_info.get("exchange", ""),
            "routing_key": delivery_info.get("routing_key", ""),
            "redelivered": bool(delivery_info.get("redelivered", False)),
        },
    }
    for name in _PROPERTIES:
        if name in properties:
            props[name] = properties[name]
    envelope = {
        "body": base64.b64encode(body_text(body)).decode("ascii"),
        "content-type": properties.get("content_type"),
        "content-encoding": properties.get("content_encoding"),
        "headers": headers,
        "properties": props,
    }
    if envelope["content-type"] is None:
        del envelope["content-type"]
    return orjson.dumps(envelope, default=_as_text)


def body_text(body: Any) -> bytes:
    """The body as bytes (py-amqp hands a body with a ``content_encoding`` over decoded)."""
    if isinstance(body, str):
        return body.encode("utf-8", "surrogatepass")
    return bytes(body)
