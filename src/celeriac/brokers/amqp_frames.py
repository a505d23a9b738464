"""``basic.publish`` frames written directly (AMQP 0.9.1, section 4.2 and the Basic class).

py-amqp encodes a message's properties with a general, per-call encoder and writes each
message with its own system call; a task message needs a handful of properties and a small
header table of strings, numbers, lists and dicts. Encoding those here, and writing a batch
of messages in one call, takes a good part of the CPU cost off every send. A value this
encoder does not know (a ``Decimal``, a ``datetime``, a string over 255 bytes where a short
string is due) raises :class:`Unencodable`, and the caller lets py-amqp publish that message.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_END = 1, 2, 3, b"\xce"
BASIC_CLASS, BASIC_PUBLISH = 60, 40
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

# Basic content properties in wire order, with their flag bit and kind: s = short string,
# o = octet, F = field table
_PROPERTIES = (
    ("content_type", 0x8000, "s"),
    ("content_encoding", 0x4000, "s"),
    ("application_headers", 0x2000, "F"),
    ("delivery_mode", 0x1000, "o"),
    ("priority", 0x0800, "o"),
    ("correlation_id", 0x0400, "s"),
    ("reply_to", 0x0200, "s"),
    ("expiration", 0x0100, "s"),
    ("message_id", 0x0080, "s"),
    ("type", 0x0020, "s"),
    ("user_id", 0x0010, "s"),
    ("app_id", 0x0008, "s"),
)
_KNOWN = frozenset(name for name, _, _ in _PROPERTIES)

_frame_head = struct.Struct(">BHI").pack
_u8 = struct.Struct(">B").pack
_u16 = struct.Struct(">H").pack
_u32 = struct.Struct(">I").pack
_tagged_i32 = struct.Struct(">ci").pack
_tagged_i64 = struct.Struct(">cq").pack
_tagged_f64 = struct.Struct(">cd").pack
_content_head = struct.Struct(">HHQH").pack
_publish_head = struct.Struct(">HHH").pack


class Unencodable(ValueError):
    """A value this encoder leaves to py-amqp."""


def _short(text: Any) -> bytes:
    if isinstance(text, str):
        raw = text.encode("utf-8", "surrogatepass")
    elif isinstance(text, bytes):
        raw = text
    else:
        raise Unencodable(f"a {type(text).__name__} where a short string is due")
    if len(raw) > 255:
        raise Unencodable("a short string over 255 bytes")
    return _u8(len(raw)) + raw


def _value(value: Any, out: list[bytes]) -> None:
    # the field types py-amqp and RabbitMQ read (py-amqp writes the same letters)
    if isinstance(value, str):
        raw = value.encode("utf-8", "surrogatepass")
        out += (b"S", _u32(len(raw)), raw)
    elif value is True or value is False:
        out.append(b"t\x01" if value else b"t\x00")
    elif isinstance(value, int):
        if -INT32_MAX <= value <= INT32_MAX:
            out.append(_tagged_i32(b"I", value))
        elif -INT64_MAX <= value <= INT64_MAX:
            out.append(_tagged_i64(b"L", value))
        else:
            raise Unencodable("an integer over 64 bits")
    elif isinstance(value, float):
        out.append(_tagged_f64(b"d", value))
    elif value is None:
        out.append(b"V")
    elif isinstance(value, Mapping):
        out.append(b"F")
        out.append(table(value))
    elif isinstance(value, (list, tuple)):
        items: list[bytes] = []
        for item in value:
            _value(item, items)
        joined = b"".join(items)
        out += (b"A", _u32(len(joined)), joined)
    elif isinstance(value, bytes):
        out += (b"S", _u32(len(value)), value)
    else:
        raise Unencodable(f"a {type(value).__name__} value")


_NAMES: dict[str, bytes] = {}  # header names, encoded: the same few in every message
MAX_NAMES = 1024


def _name(name: Any) -> bytes:
    encoded = _NAMES.get(name) if isinstance(name, str) else None
    if encoded is None:
        encoded = _short(name)
        if isinstance(name, str) and len(_NAMES) < MAX_NAMES:
            _NAMES[name] = encoded
    return encoded


def table(fields: Mapping[Any, Any]) -> bytes:
    """A field table: its byte length, then each name (short string), type and value."""
    out: list[bytes] = []
    for name, value in fields.items():
        out.append(_name(name))
        _value(value, out)
    joined = b"".join(out)
    return _u32(len(joined)) + joined


def _properties(properties: Mapping[str, Any]) -> tuple[int, bytes]:
    if not _KNOWN.issuperset(properties):
        raise Unencodable("a property this encoder does not write")
    flags, out = 0, []
    for name, bit, kind in _PROPERTIES:
        value = properties.get(name)
        if value is None:
            continue
        flags |= bit
        if kind == "s":
            out.append(_short(value))
        elif kind == "o":
            out.append(_u8(int(value) & 0xFF))
        else:
            out.append(table(value))
    return flags, b"".join(out)


def publish(
    channel_id: int,
    exchange: str,
    routing_key: str,
    body: bytes,
    properties: Mapping[str, Any],
    frame_max: int,
) -> bytes:
    """The method, header and body frames of one ``basic.publish`` (not mandatory, not
    immediate), bodies cut to *frame_max*."""
    args = _publish_head(BASIC_CLASS, BASIC_PUBLISH, 0) + _short(exchange) + _short(routing_key)
    method = b"".join((_frame_head(FRAME_METHOD, channel_id, len(args) + 1), args, b"\x00"))
    flags, encoded = _properties(properties)
    header = _content_head(BASIC_CLASS, 0, len(body), flags) + encoded
    parts = [method, FRAME_END, _frame_head(FRAME_HEADER, channel_id, len(header)), header]
    parts.append(FRAME_END)
    chunk = max(1, frame_max - 8)
    for start in range(0, len(body), chunk):
        piece = body[start : start + chunk]
        parts += (_frame_head(FRAME_BODY, channel_id, len(piece)), piece, FRAME_END)
    return b"".join(parts)
