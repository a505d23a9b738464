"""Helpers for unit tests that look at what a client put on the ``memory://`` broker."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from celeriac import Celery


def take_envelopes(app: Celery, queue: str = "celery") -> list[dict[str, Any]]:
    """Every envelope waiting on *queue* (any priority), oldest first, decoded from JSON."""
    deliveries = app.broker.fetch([queue], 1000, 0.0)
    return [orjson.loads(delivery.raw) for delivery in deliveries]


def decoded_body(envelope: dict[str, Any]) -> Any:
    """The ``[args, kwargs, embed]`` list inside a base64 envelope body."""
    assert envelope["properties"]["body_encoding"] == "base64"
    return orjson.loads(base64.b64decode(envelope["body"]))
