"""Celery's event format on the wire (spec §9).

An event is a flat JSON object with ``type`` (``worker-heartbeat``, ``task-succeeded``, ...),
``hostname``, ``pid``, ``clock`` (a Lamport clock), ``timestamp`` and ``utcoffset``. It goes
to the ``celeryev`` exchange, which Celery makes a fanout on Redis: kombu PUBLISHes the
message envelope on the channel ``/{db}.celeryev/<routing key>``, the routing key being the
type with ``-`` turned into ``.``. Task events of a worker may travel together as a JSON
list with the routing key ``task.multi``.
"""

from __future__ import annotations

import base64
import platform
import time
import uuid
from typing import Any

import orjson

from .. import __version__

EXCHANGE = "celeryev"
#: the fields Celery's heartbeats name the software with
SOFTWARE_INFO: dict[str, str] = {
    "sw_ident": "py-celeriac",
    "sw_ver": __version__,
    "sw_sys": platform.system(),
}

Event = dict[str, Any]


def routing_key(event_type: str) -> str:
    """``task-succeeded`` → ``task.succeeded``."""
    return event_type.replace("-", ".")


def group_of(event_type: str) -> str:
    """``task-succeeded`` → ``task``: Celery's event groups."""
    return event_type.partition("-")[0]


def channel(db: int, key: str, exchange: str = EXCHANGE) -> str:
    """The Redis PUB/SUB channel kombu uses for a fanout message."""
    return f"/{db}.{exchange}/{key}"


def utcoffset() -> float:
    """The local offset to UTC in hours (Celery's sign: west of UTC is positive)."""
    seconds = time.altzone if time.localtime().tm_isdst else time.timezone
    return seconds / 3600


def encode(body: Event | list[Event], hostname: str, key: str, exchange: str = EXCHANGE) -> bytes:
    """The kombu envelope of one event (or a list of them), as Celery's dispatcher sends it."""
    return orjson.dumps(
        {
            "body": base64.b64encode(orjson.dumps(body, default=repr)).decode("ascii"),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {"hostname": hostname},
            "properties": {
                "delivery_mode": 1,
                "delivery_info": {"exchange": exchange, "routing_key": key},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    )


def decode(raw: bytes | str) -> list[Event]:
    """The events in one envelope; ValueError when it is not a JSON event envelope."""
    try:
        envelope = orjson.loads(raw)
        body = envelope["body"]
        if isinstance(body, str):
            encoding = (envelope.get("properties") or {}).get("body_encoding")
            if encoding == "base64":
                body = base64.b64decode(body)
            if envelope.get("content-type", "application/json") != "application/json":
                raise ValueError(f"events in {envelope.get('content-type')!r} are not read")
            body = orjson.loads(body)
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not an event envelope: {exc}") from exc
    events = body if isinstance(body, list) else [body]
    if not all(isinstance(event, dict) and "type" in event for event in events):
        raise ValueError(
            "an event envelope's body must be an object (or a list of them) with a type"
        )
    return events
