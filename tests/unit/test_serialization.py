"""Bodies and results as JSON (the default) or pickle (only when explicitly accepted)."""

from __future__ import annotations

import datetime
import decimal
import pickle
import uuid
from typing import Any

import orjson
import pytest

from celeriac import Celery, serialization
from celeriac.errors import ContentDisallowed, SerializationError

JSON = "application/json"
PICKLE = "application/x-python-serialize"


class Opaque:
    """A user type JSON cannot hold."""


def test_json_round_trips_nested_and_non_ascii_values() -> None:
    value = [[1, "héllo ✓ 日本"], {"ü": {"deep": [None, True, 2.5, -7]}}, {}]
    assert serialization.loads(serialization.dumps(value, JSON), JSON, ["json"]) == value


def test_json_writes_tuples_as_lists() -> None:
    data = serialization.dumps([(1, 2), {"t": (3,)}], JSON)
    assert serialization.loads(data, JSON, ["json"]) == [[1, 2], {"t": [3]}]


def test_json_keeps_integers_past_64_bits() -> None:
    data = serialization.dumps([2**70], JSON)
    assert serialization.loads(data, JSON, ["json"]) == [2**70]


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (Opaque(), "Opaque"),
        ({1, 2}, "set"),
        (object(), "object"),
        (frozenset, "type"),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else v,
)
def test_unserializable_value_raises_serialization_error_naming_its_type(
    value: Any, type_name: str
) -> None:
    with pytest.raises(SerializationError, match=rf"\b{type_name}\b"):
        serialization.dumps([value], JSON)


def test_unserializable_value_deep_inside_is_named_not_its_container() -> None:
    with pytest.raises(SerializationError, match=r"type Opaque"):
        serialization.dumps([1, {"a": [2, {"b": Opaque()}]}], JSON)


def test_unserializable_dict_key_is_named() -> None:
    with pytest.raises(SerializationError, match=r"type Opaque"):
        serialization.dumps({Opaque(): 1}, JSON)


def test_self_containing_list_raises_serialization_error_instead_of_hanging() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(SerializationError, match="Circular reference"):
        serialization.dumps(loop, JSON)


def test_too_deeply_nested_value_raises_serialization_error() -> None:
    value: list[Any] = []
    for _ in range(100_000):
        value = [value]
    with pytest.raises(SerializationError):
        serialization.dumps(value, JSON)


def test_json_decode_of_garbage_raises_serialization_error() -> None:
    with pytest.raises(SerializationError, match="not valid JSON"):
        serialization.loads(b"{nope", JSON, ["json"])


def test_pickle_is_refused_by_default() -> None:
    data = pickle.dumps([1, 2])
    with pytest.raises(ContentDisallowed, match="refusing to deserialize"):
        serialization.loads(data, PICKLE, ["json"])


def test_pickle_is_read_when_accepted_by_name() -> None:
    data = pickle.dumps([1, datetime.date(2030, 1, 2)])
    assert serialization.loads(data, PICKLE, ["json", "pickle"]) == [1, datetime.date(2030, 1, 2)]


def test_pickle_is_read_when_accepted_by_content_type() -> None:
    assert serialization.loads(pickle.dumps([1]), PICKLE, [PICKLE]) == [1]


def test_unknown_content_type_is_refused_naming_it() -> None:
    with pytest.raises(ContentDisallowed, match="application/x-yaml"):
        serialization.loads(b"a: 1", "application/x-yaml", ["json", "pickle"])


def test_unknown_serializer_name_raises_listing_the_known_ones() -> None:
    with pytest.raises(SerializationError, match=r"'yaml'.*\['json', 'pickle'\]"):
        serialization.content_type_for("yaml")


def test_delay_with_unserializable_argument_raises_naming_its_type(app: Celery) -> None:
    @app.task
    def consume(value: Any) -> None:
        return None

    with pytest.raises(SerializationError, match=r"type Opaque"):
        consume.delay(Opaque())


def test_delay_with_unserializable_argument_queues_nothing(app: Celery) -> None:
    @app.task
    def consume(value: Any) -> None:
        return None

    with pytest.raises(SerializationError):
        consume.delay({"when": {1, 2}})
    assert app.broker.queue_length("celery") == 0


def test_task_with_pickle_serializer_sends_a_pickle_body(app: Celery) -> None:
    app.conf.accept_content = ["json", "pickle"]

    @app.task(serializer="pickle")
    def consume(value: Any) -> None:
        return None

    consume.delay(Opaque())
    (delivery,) = app.broker.fetch(["celery"], 1, 0.0)
    assert b'"content-type":"application/x-python-serialize"' in delivery.raw


# kombu's typed JSON: what a Celery peer writes and reads for these types
KOMBU_TYPED = [
    (
        datetime.datetime(2030, 1, 2, 3, 4, 5, 600000, tzinfo=datetime.timezone.utc),
        {"__type__": "datetime", "__value__": "2030-01-02T03:04:05.600000+00:00"},
    ),
    (
        datetime.datetime(2030, 1, 2, 3, 4, 5),
        {"__type__": "datetime", "__value__": "2030-01-02T03:04:05"},
    ),
    (datetime.date(2030, 1, 2), {"__type__": "date", "__value__": "2030-01-02"}),
    (datetime.time(3, 4, 5), {"__type__": "time", "__value__": "03:04:05"}),
    (decimal.Decimal("1.10"), {"__type__": "decimal", "__value__": "1.10"}),
    (b"raw", {"__type__": "bytes", "__value__": "raw"}),
    (b"\xff\x00", {"__type__": "base64", "__value__": "/wA="}),
]


@pytest.mark.parametrize(("value", "wire"), KOMBU_TYPED, ids=lambda v: type(v).__name__)
def test_non_json_value_is_written_as_kombus_typed_object(value: Any, wire: Any) -> None:
    assert orjson.loads(serialization.dumps([value], JSON)) == [wire]


@pytest.mark.parametrize(("value", "wire"), KOMBU_TYPED, ids=lambda v: type(v).__name__)
def test_kombus_typed_object_is_read_back_as_the_value(value: Any, wire: Any) -> None:
    decoded = serialization.loads(orjson.dumps({"k": [wire]}), JSON, ["json"])
    assert decoded == {"k": [value]}
    assert type(decoded["k"][0]) is type(value)


def test_kombus_uuid_object_is_read_as_a_uuid() -> None:
    wire = b'[{"__type__": "uuid", "__value__": {"hex": "00000000000000000000000000000005"}}]'
    assert serialization.loads(wire, JSON, ["json"]) == [uuid.UUID(int=5)]


def test_typed_values_survive_the_standard_library_fallback() -> None:
    value = [2**70, datetime.date(2030, 1, 2)]
    assert serialization.loads(serialization.dumps(value, JSON), JSON, ["json"]) == value


def test_object_with_an_unknown_type_marker_stays_a_dict() -> None:
    wire = b'{"__type__": "pydantic", "__value__": {"a": 1}}'
    assert serialization.loads(wire, JSON, ["json"]) == {
        "__type__": "pydantic",
        "__value__": {"a": 1},
    }


def test_object_with_a_marker_and_other_keys_stays_a_dict() -> None:
    wire = b'{"__type__": "date", "__value__": "2030-01-02", "note": 1}'
    assert serialization.loads(wire, JSON, ["json"])["note"] == 1


def test_object_with_a_non_string_marker_stays_a_dict() -> None:
    wire = b'{"__type__": ["date"], "__value__": "2030-01-02"}'
    assert serialization.loads(wire, JSON, ["json"]) == {
        "__type__": ["date"],
        "__value__": "2030-01-02",
    }


@pytest.mark.parametrize(
    "wire",
    [
        b'{"__type__": "datetime", "__value__": "not a time"}',
        b'{"__type__": "date", "__value__": 5}',
        b'{"__type__": "decimal", "__value__": "1.2.3"}',
        b'{"__type__": "uuid", "__value__": "flat"}',
    ],
    ids=repr,
)
def test_typed_object_with_a_bad_value_raises_serialization_error(wire: bytes) -> None:
    with pytest.raises(SerializationError, match="bad '"):
        serialization.loads(wire, JSON, ["json"])
