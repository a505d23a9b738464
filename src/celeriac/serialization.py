"""Encode and decode task bodies and results by content type.

JSON (orjson, with the standard library as the fallback for what orjson refuses, such as
integers past 64 bits) is the default. datetime, date, time, Decimal and bytes travel as
kombu's ``{"__type__": ..., "__value__": ...}`` objects, so they reach a Celery task (and come
back from one) as themselves. Pickle is refused unless the app lists it in ``accept_content``
and picks it as ``task_serializer``: unpickling runs code.
"""

from __future__ import annotations

import base64
import datetime
import json
import uuid
from collections.abc import Callable, Collection
from typing import Any

import orjson

from .errors import ContentDisallowed, SerializationError

JSON = "application/json"
PICKLE = "application/x-python-serialize"

CONTENT_TYPES = {"json": JSON, "pickle": PICKLE}
NAMES = {v: k for k, v in CONTENT_TYPES.items()}

# datetimes go through _default too, so they get kombu's markers rather than bare strings
_ORJSON_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
# decimal and pickle are imported on first use: an idle worker never needs them


def _decimal(text: Any) -> Any:
    import decimal

    return decimal.Decimal(text)


def _typed() -> tuple[type, ...]:
    import decimal

    return (datetime.date, datetime.time, decimal.Decimal, bytes)  # datetime is a date


def _tagged(marker: str, value: Any) -> dict[str, Any]:
    return {"__type__": marker, "__value__": value}


def _default(value: Any) -> Any:
    """kombu's JSON encoder, for the types orjson is not told to write itself."""
    if isinstance(value, datetime.datetime):  # before date: a datetime is a date
        return _tagged("datetime", value.isoformat())
    if isinstance(value, datetime.date):
        return _tagged("date", value.isoformat())
    if isinstance(value, datetime.time):
        return _tagged("time", value.isoformat())
    if type(value).__name__ == "Decimal":
        import decimal

        if isinstance(value, decimal.Decimal):
            return _tagged("decimal", str(value))
    if isinstance(value, bytes):
        try:
            return _tagged("bytes", value.decode("utf-8"))
        except UnicodeDecodeError:
            return _tagged("base64", base64.b64encode(value).decode("ascii"))
    if isinstance(value, (tuple, frozenset)):
        return list(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": datetime.datetime.fromisoformat,
    "date": lambda text: datetime.datetime.fromisoformat(text).date(),
    "time": datetime.time.fromisoformat,
    "decimal": lambda text: _decimal(text),
    "uuid": lambda fields: uuid.UUID(hex=fields["hex"]),
    "bytes": lambda text: text.encode("utf-8"),
    "base64": lambda text: base64.b64decode(text.encode("ascii")),
}


def _untag(value: Any) -> Any:
    """Turn kombu's typed objects back into values; unknown markers stay plain dicts."""
    if isinstance(value, list):
        return [_untag(item) for item in value]
    if not isinstance(value, dict):
        return value
    marker = value.get("__type__") if value.keys() == {"__type__", "__value__"} else None
    decoder = _DECODERS.get(marker) if isinstance(marker, str) else None
    if decoder is None:
        return {key: _untag(item) for key, item in value.items()}
    try:
        return decoder(value["__value__"])
    except (TypeError, ValueError, KeyError, AttributeError, ArithmeticError) as exc:
        raise SerializationError(f"bad {marker!r} value in JSON: {exc}") from exc


def dumps_json(value: Any) -> bytes:
    """JSON bytes for *value*, or SerializationError naming the type that does not fit."""
    try:
        return orjson.dumps(value, default=_default, option=_ORJSON_OPTS)
    except TypeError as exc:
        if "not JSON serializable" in str(exc):
            raise SerializationError(
                f"cannot serialize a value of type {_offending_type(value)} as JSON; "
                f"pass only JSON types (str, int, float, bool, None, list, dict) or convert it "
                f"first ({exc})"
            ) from exc
    try:  # integers beyond 64 bits and similar: the standard library takes them
        return json.dumps(value, default=_default, ensure_ascii=False).encode()
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
        elif not (item is None or isinstance(item, (str, int, float, bool, *_typed()))):
            return type(item).__name__
    return type(value).__name__


def loads_json(data: bytes | str) -> Any:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            value = json.loads(data)
        except (ValueError, TypeError, RecursionError) as exc:  # RecursionError: nested too deep
            raise SerializationError(f"not valid JSON: {exc}") from exc
    typed = b'"__type__"' in data if isinstance(data, bytes) else '"__type__"' in data
    if not typed:  # the common case: nothing to convert, no second walk
        return value
    try:
        return _untag(value)
    except RecursionError as exc:
        raise SerializationError(f"not valid JSON: nested too deep ({exc})") from exc


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
            import pickle

            return pickle.dumps(value, protocol=4)
        except Exception as exc:
            raise SerializationError(f"cannot pickle value: {exc}") from exc
    raise SerializationError(f"unknown content type {content_type!r}")


def loads(data: bytes, content_type: str, accept: Collection[str]) -> Any:
    check_allowed(content_type, accept)
    if content_type == JSON:
        return loads_json(data)
    try:
        import pickle

        return pickle.loads(data)
    except Exception as exc:
        raise SerializationError(f"cannot unpickle value: {exc}") from exc
