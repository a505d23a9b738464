"""Encode and decode task bodies and results by content type.

JSON (orjson, with the standard library as the fallback for what orjson refuses, such as
integers past 64 bits) is the default. Pickle is refused unless the app lists it in
``accept_content`` and picks it as ``task_serializer``: unpickling runs code.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Collection
from typing import Any

import orjson

from .errors import ContentDisallowed, SerializationError

JSON = "application/json"
PICKLE = "application/x-python-serialize"

CONTENT_TYPES = {"json": JSON, "pickle": PICKLE}
NAMES = {v: k for k, v in CONTENT_TYPES.items()}

_ORJSON_OPTS = orjson.OPT_NON_STR_KEYS


def _orjson_default(value: Any) -> Any:
    if isinstance(value, (tuple, frozenset)):
        return list(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _stdlib_default(value: Any) -> Any:
    if isinstance(value, (tuple, frozenset)):
        return list(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def dumps_json(value: Any) -> bytes:
    """JSON bytes for *value*, or SerializationError naming the type that does not fit."""
    try:
        return orjson.dumps(value, default=_orjson_default, option=_ORJSON_OPTS)
    except TypeError as exc:
        if "not JSON serializable" in str(exc):
            raise SerializationError(
                f"cannot serialize a value of type {_offending_type(value)} as JSON; "
                f"pass only JSON types (str, int, float, bool, None, list, dict) or convert it "
                f"first ({exc})"
            ) from exc
    try:  # integers beyond 64 bits and similar: the standard library takes them
        return json.dumps(value, default=_stdlib_default, ensure_ascii=False).encode()
    except (TypeError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise SerializationError(
            f"cannot serialize a value of type {_offending_type(value)} as JSON ({exc}); "
            f"pass only JSON types or convert it first"
        ) from exc


def _offending_type(value: Any) -> str:
    """Name the innermost value that JSON cannot hold, for the error message."""
    stack = [value]
    seen: set[int] = set()  # a list that contains itself must not loop forever
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            stack.extend(item.values())
            stack.extend(k for k in item if not isinstance(k, (str, int, float, bool)))
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif not (item is None or isinstance(item, (str, int, float, bool))):
            return type(item).__name__
    return type(value).__name__


def loads_json(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            return json.loads(data)
        except (ValueError, TypeError, RecursionError) as exc:  # RecursionError: nested too deep
            raise SerializationError(f"not valid JSON: {exc}") from exc


def content_type_for(serializer: str) -> str:
    try:
        return CONTENT_TYPES[serializer]
    except KeyError:
        raise SerializationError(
            f"unknown serializer {serializer!r}; use one of {sorted(CONTENT_TYPES)}"
        ) from None


def check_allowed(content_type: str, accept: Collection[str]) -> None:
    """Raise ContentDisallowed unless *content_type* is in the accepted list."""
    name = NAMES.get(content_type)
    if name is None:
        raise ContentDisallowed(
            f"unknown content type {content_type!r}; "
            f"celeriac reads {sorted(CONTENT_TYPES.values())}"
        )
    if name not in accept and content_type not in accept:
        raise ContentDisallowed(
            f"refusing to deserialize content of type {name!r}; add {name!r} to accept_content "
            f"only if every producer is trusted"
        )


def dumps(value: Any, content_type: str) -> bytes:
    if content_type == JSON:
        return dumps_json(value)
    if content_type == PICKLE:
        try:
            return pickle.dumps(value, protocol=4)
        except Exception as exc:
            raise SerializationError(f"cannot pickle value: {exc}") from exc
    raise SerializationError(f"unknown content type {content_type!r}")


def loads(data: bytes, content_type: str, accept: Collection[str]) -> Any:
    check_allowed(content_type, accept)
    if content_type == JSON:
        return loads_json(data)
    try:
        return pickle.loads(data)
    except Exception as exc:
        raise SerializationError(f"cannot unpickle value: {exc}") from exc
