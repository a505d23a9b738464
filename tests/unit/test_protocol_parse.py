"""What a worker makes of a queue item: a runnable TaskMessage, or InvalidMessage with a reason."""

from __future__ import annotations

import base64
import pickle
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from celeriac import protocol
from celeriac.errors import InvalidMessage

TASK_ID = "17dc70a6-cec4-4b7a-bda2-d2831d62f343"

# The message a Celery 5.7 client sent for add.delay(2, 3) (spec §2), byte for byte.
CELERY_ENVELOPE: dict[str, Any] = {
    "body": (
        "W1syLCAzXSwge30sIHsiY2FsbGJhY2tzIjogbnVsbCwgImVycmJhY2tzIjogbnVsbCwg"
        "ImNoYWluIjogbnVsbCwgImNob3JkIjogbnVsbH1d"
    ),
    "content-encoding": "utf-8",
    "content-type": "application/json",
    "headers": {
        "lang": "py",
        "task": "proj.add",
        "id": TASK_ID,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": TASK_ID,
        "parent_id": None,
        "argsrepr": "(2, 3)",
        "kwargsrepr": "{}",
        "origin": "gen3937@vm",
        "ignore_result": False,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    },
    "properties": {
        "correlation_id": TASK_ID,
        "reply_to": "d507b907-b89f-3979-8189-fd1be9ef7834",
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": "celery"},
        "priority": 0,
        "body_encoding": "base64",
        "delivery_tag": "271b3a8b-d099-4b7c-9c18-5b2fc3080028",
    },
}


def _raw(envelope: dict[str, Any]) -> bytes:
    return orjson.dumps(envelope)


def _with_body(body: bytes, **changes: Any) -> dict[str, Any]:
    envelope = orjson.loads(orjson.dumps(CELERY_ENVELOPE))
    envelope["body"] = base64.b64encode(body).decode()
    envelope.update(changes)
    return envelope  # type: ignore[no-any-return]


def test_celery_client_message_parses_to_its_task_and_arguments() -> None:
    message = protocol.parse_envelope(_raw(CELERY_ENVELOPE))
    assert (message.task, message.id, message.args, message.kwargs) == (
        "proj.add",
        TASK_ID,
        [2, 3],
        {},
    )


def test_own_envelope_round_trips_through_the_parser() -> None:
    raw = protocol.build_envelope(
        "proj.echo", "id-1", [1, "é"], {"k": [None, 2.5]}, protocol.SendOptions(priority=6)
    )
    message = protocol.parse_envelope(raw)
    assert (message.task, message.id, message.args, message.kwargs, message.priority) == (
        "proj.echo",
        "id-1",
        [1, "é"],
        {"k": [None, 2.5]},
        6,
    )


def test_headers_with_only_task_and_id_are_enough() -> None:
    envelope = _with_body(b"[[2, 3], {}, {}]")
    envelope["headers"] = {"task": "proj.add", "id": TASK_ID}
    message = protocol.parse_envelope(_raw(envelope))
    assert (message.task, message.args, message.retries, message.eta) == (
        "proj.add",
        [2, 3],
        0,
        None,
    )


def test_body_without_body_encoding_is_read_as_plain_text() -> None:
    envelope = orjson.loads(orjson.dumps(CELERY_ENVELOPE))
    envelope["body"] = "[[4, 5], {}, null]"
    del envelope["properties"]["body_encoding"]
    message = protocol.parse_envelope(_raw(envelope))
    assert message.args == [4, 5]


def test_null_embed_reads_as_the_empty_embed() -> None:
    message = protocol.parse_envelope(_raw(_with_body(b"[[], {}, null]")))
    assert message.embed == {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def test_eta_with_offset_parses_to_an_aware_datetime() -> None:
    envelope = orjson.loads(orjson.dumps(CELERY_ENVELOPE))
    envelope["headers"]["eta"] = "2026-11-24T11:49:12.659619+02:00"
    message = protocol.parse_envelope(_raw(envelope))
    assert message.eta == datetime(
        2026, 11, 24, 11, 49, 12, 659619, tzinfo=timezone(timedelta(hours=2))
    )


def test_naive_eta_is_read_as_utc_like_celery() -> None:
    envelope = orjson.loads(orjson.dumps(CELERY_ENVELOPE))
    envelope["headers"]["eta"] = "2026-11-24T11:49:12"
    message = protocol.parse_envelope(_raw(envelope))
    assert message.eta == datetime(2026, 11, 24, 11, 49, 12, tzinfo=timezone.utc)


def test_pickle_body_parses_when_pickle_is_accepted() -> None:
    envelope = _with_body(
        pickle.dumps([[1, 2], {}, None]), **{"content-type": "application/x-python-serialize"}
    )
    message = protocol.parse_envelope(_raw(envelope), accept=("json", "pickle"))
    assert message.args == [1, 2]


def _drop_header(name: str) -> Callable[[dict[str, Any]], None]:
    def change(envelope: dict[str, Any]) -> None:
        del envelope["headers"][name]

    return change


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(envelope: dict[str, Any]) -> None:
        envelope[key] = value

    return change


def _set_body(body: bytes) -> Callable[[dict[str, Any]], None]:
    return _set("body", base64.b64encode(body).decode())


INVALID_CASES: dict[str, tuple[Callable[[dict[str, Any]], None], str, bool]] = {
    # name: (change to the good envelope, words the reason must hold, whether the id survives)
    "no headers": (lambda e: e.pop("headers"), "no 'headers'", False),
    "headers not an object": (_set("headers", ["task", "id"]), "no 'headers'", False),
    "properties not an object": (_set("properties", "celery"), "not an object", False),
    "no task header": (_drop_header("task"), "no 'task'", True),
    "empty task header": (lambda e: e["headers"].update(task=""), "no 'task'", True),
    "task header not a string": (lambda e: e["headers"].update(task=42), "no 'task'", True),
    "no id header": (_drop_header("id"), "no 'id'", False),
    "content type not a string": (_set("content-type", 5), "content-type", True),
    "unknown content type": (_set("content-type", "application/x-yaml"), "unknown content", True),
    "pickle not accepted": (
        _set("content-type", "application/x-python-serialize"),
        "refusing to deserialize",
        True,
    ),
    "body not a string": (_set("body", [[2, 3], {}, {}]), "'body' is not a string", True),
    "body not base64": (_set("body", "!!not base64!!"), "not valid base64", True),
    "unknown body encoding": (
        lambda e: e["properties"].update(body_encoding="rot13"),
        "body_encoding",
        True,
    ),
    "body not json": (_set_body(b"this is not json"), "cannot be decoded", True),
    "body is an object": (_set_body(b'{"args": [2, 3]}'), "3-element list", True),
    "body has two elements": (_set_body(b"[[2, 3], {}]"), "3-element list", True),
    "body has four elements": (_set_body(b"[[2, 3], {}, {}, {}]"), "3-element list", True),
    "args not a list": (_set_body(b"[5, {}, {}]"), "args is int", True),
    "kwargs not an object": (_set_body(b"[[], [], {}]"), "kwargs is list", True),
    "embed not an object": (_set_body(b"[[], {}, 3]"), "embed is int", True),
}


def test_envelope_without_properties_or_content_type_is_read_as_json() -> None:
    envelope = orjson.loads(orjson.dumps(CELERY_ENVELOPE))
    envelope.pop("properties")
    envelope.pop("content-type")
    envelope.pop("content-encoding", None)
    envelope["body"] = orjson.dumps([[2, 3], {}, {}]).decode()
    message = protocol.parse_envelope(_raw(envelope))
    assert (message.args, message.properties, message.content_type) == (
        [2, 3],
        {},
        "application/json",
    )


@pytest.mark.parametrize("case", sorted(INVALID_CASES))
def test_malformed_message_raises_invalid_message_with_its_reason(case: str) -> None:
    change, reason, _ = INVALID_CASES[case]
    envelope = orjson.loads(orjson.dumps(CELERY_ENVELOPE))
    change(envelope)
    with pytest.raises(InvalidMessage) as caught:
        protocol.parse_envelope(_raw(envelope))
    assert reason in caught.value.reason


@pytest.mark.parametrize("case", sorted(INVALID_CASES))
def test_invalid_message_carries_the_task_id_when_the_headers_had_one(case: str) -> None:
    change, _, keeps_id = INVALID_CASES[case]
    envelope = orjson.loads(orjson.dumps(CELERY_ENVELOPE))
    change(envelope)
    with pytest.raises(InvalidMessage) as caught:
        protocol.parse_envelope(_raw(envelope))
    assert caught.value.task_id == (TASK_ID if keeps_id else None)


@pytest.mark.parametrize(
    "raw", [b"this is not json", b"", b"\xff\xfe", b"[1, 2", "{\ud800}"], ids=repr
)
def test_envelope_that_is_not_json_raises_invalid_message(raw: bytes | str) -> None:
    with pytest.raises(InvalidMessage, match="not valid JSON"):
        protocol.parse_envelope(raw)


@pytest.mark.parametrize("raw", [b"[]", b"null", b"42", b'"text"'], ids=repr)
def test_envelope_that_is_not_an_object_raises_invalid_message(raw: bytes) -> None:
    with pytest.raises(InvalidMessage, match="not a JSON object"):
        protocol.parse_envelope(raw)


def test_deeply_nested_body_raises_invalid_message_not_recursion_error() -> None:
    depth = 100_000
    envelope = _with_body(b"[" * depth + b"]" * depth)
    with pytest.raises(InvalidMessage) as caught:
        protocol.parse_envelope(_raw(envelope))
    assert caught.value.task_id == TASK_ID


def test_mark_redelivered_sets_both_redelivered_flags() -> None:
    envelope = orjson.loads(protocol.mark_redelivered(_raw(CELERY_ENVELOPE)))
    assert envelope["headers"]["redelivered"] is True
    assert envelope["properties"]["delivery_info"]["redelivered"] is True
