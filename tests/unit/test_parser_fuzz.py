"""Fuzz the worker's parser: whatever sits on a queue, ``parse_envelope`` either returns a
message the worker can use or raises InvalidMessage, never anything else.

About 10,000 generated inputs across five strategies (each ``max_examples`` below).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson
from hypothesis import HealthCheck, example, find, given, settings
from hypothesis import strategies as st

from celeriac import protocol
from celeriac.errors import InvalidMessage

FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["", "proj.add", "2026-11-24T11:49:12+00:00", "base64", "utf-8"])
)
# kombu's typed values, well-formed or not: the parser decodes these inside bodies
kombu_typed = st.fixed_dictionaries(
    {
        "__type__": st.sampled_from(["datetime", "date", "time", "decimal", "uuid", "bytes"])
        | st.sampled_from(["base64", "nope", 5]),
        "__value__": json_scalars | st.fixed_dictionaries({"hex": json_scalars}),
    }
)
json_values = st.recursive(
    json_scalars | kombu_typed,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)
HEADER_NAMES = ["eta", "expires", "retries", "timelimit", "group", "parent_id"]
PROPERTY_NAMES = ["body_encoding", "delivery_tag", "delivery_info", "priority", "correlation_id"]
CONTENT_TYPES = [
    *["application/json"] * 4,
    "application/x-python-serialize",
    "application/x-yaml",
    "",
    "APPLICATION/JSON",
]


def dumps(value: Any) -> bytes:
    """JSON as Python writes it: NaN, Infinity and huge integers included."""
    return json.dumps(value).encode()


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# cheaper than json_values (no recursion), for the strategies that draw many of them
small_json = st.one_of(
    json_scalars,
    kombu_typed,
    st.lists(json_scalars | kombu_typed, max_size=3),
    st.dictionaries(st.sampled_from(["task", "id", "a", "é"]), json_scalars, max_size=3),
)
body_payloads = st.one_of(
    st.binary(max_size=48),
    small_json.map(dumps),
    st.tuples(small_json, small_json, small_json).map(lambda t: dumps(list(t))),
    st.tuples(
        st.lists(small_json, max_size=3),
        st.dictionaries(st.text(max_size=5), small_json, max_size=3),
        st.none() | st.just({}) | st.fixed_dictionaries({"chain": small_json}),
    ).map(lambda t: dumps(list(t))),
    st.integers(0, 5000).map(nested),
)


rarely = st.sampled_from([False] * 9 + [True])  # sampled_from leans to its first items


@st.composite
def envelopes(draw: st.DrawFn) -> bytes:
    """Envelopes shaped like Celery's, with any field missing, mistyped or garbled."""
    payload = draw(body_payloads)
    encoding = draw(st.sampled_from(["base64", "utf-8", None, "rot13", 7]))
    body: Any
    if encoding == "base64":
        body = base64.b64encode(payload).decode()
    else:
        body = payload.decode("utf-8", "replace")
    if draw(rarely):
        body = draw(small_json)
    headers: Any = {
        "task": draw(st.sampled_from(["proj.add"] * 6 + ["", 5, None])),
        "id": draw(st.sampled_from(["id-1"] * 6 + ["", 5, None])),
    }
    headers.update(draw(st.dictionaries(st.sampled_from(HEADER_NAMES), small_json, max_size=2)))
    if draw(rarely):
        headers = draw(small_json)
    properties: Any = {"delivery_tag": "tag"}
    if encoding is not None:
        properties["body_encoding"] = encoding
    properties.update(
        draw(st.dictionaries(st.sampled_from(PROPERTY_NAMES), small_json, max_size=2))
    )
    envelope: dict[str, Any] = {"body": body, "headers": headers, "properties": properties}
    content_type = draw(st.sampled_from([*CONTENT_TYPES, None]))
    if content_type is not None:
        envelope["content-type"] = content_type
    return dumps(envelope)


GOOD = orjson.loads(
    protocol.build_envelope("proj.add", "id-1", [2, 3], {"k": "v"}, protocol.SendOptions())
)
PATHS = (
    [(key,) for key in GOOD if key != "headers" and key != "properties"]
    + [("headers", key) for key in GOOD["headers"]]
    + [("properties", key) for key in GOOD["properties"]]
)


@st.composite
def mutated_envelopes(draw: st.DrawFn) -> bytes:
    """A valid envelope with a few fields deleted or replaced by arbitrary JSON."""
    envelope = orjson.loads(orjson.dumps(GOOD))
    for path in draw(st.lists(st.sampled_from(PATHS), min_size=1, max_size=3)):
        parent = envelope
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        if draw(st.booleans()):
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = draw(small_json)
    return dumps(envelope)


def check(raw: bytes | str) -> None:
    """The property: InvalidMessage with a reason, or a message every worker step can read."""
    try:
        message = protocol.parse_envelope(raw)
    except InvalidMessage as exc:
        assert exc.reason
        return
    assert isinstance(message.task, str) and message.task
    assert isinstance(message.id, str) and message.id
    assert isinstance(message.args, list)
    assert isinstance(message.kwargs, dict)
    assert isinstance(message.embed, dict)
    assert isinstance(message.properties.get("delivery_info") or {}, dict)
    # the derived fields the worker reads must not raise either
    _ = (message.retries, message.eta, message.expires, message.timelimit, message.priority)


@settings(FUZZ, max_examples=2500)
@given(st.binary(max_size=256))
def test_parser_rejects_arbitrary_bytes_with_invalid_message(raw: bytes) -> None:
    check(raw)


@settings(FUZZ, max_examples=1000)
@given(st.text(max_size=128))
def test_parser_rejects_arbitrary_text_with_invalid_message(raw: str) -> None:
    check(raw)


@settings(FUZZ, max_examples=1500)
@given(json_values.map(dumps))
def test_parser_rejects_arbitrary_json_documents_with_invalid_message(raw: bytes) -> None:
    check(raw)


@settings(FUZZ, max_examples=3000)
@given(envelopes())
# found by this test in CI: a protocol 1 body with an empty task name and id
@example(
    b'{"body": "eyJ0YXNrIjoiIiwiaWQiOiIifQ==", "headers": {"task": "", "id": ""}, '
    b'"properties": {"delivery_tag": "tag", "body_encoding": "base64"}, '
    b'"content-type": "application/json"}'
)
def test_parser_handles_garbled_celery_shaped_envelopes(raw: bytes) -> None:
    check(raw)


@settings(FUZZ, max_examples=2000)
@given(mutated_envelopes())
def test_parser_handles_valid_envelopes_with_fields_removed_or_replaced(raw: bytes) -> None:
    check(raw)


SEARCH = settings(database=None, deadline=None, max_examples=5000, derandomize=True)


def _parses(raw: bytes) -> bool:
    try:
        protocol.parse_envelope(raw)
    except InvalidMessage:
        return False
    return True


def test_garbled_envelope_strategy_also_produces_runnable_messages() -> None:
    # otherwise the fuzz above would only ever exercise the first few checks
    find(envelopes(), _parses, settings=SEARCH)


def test_mutation_strategy_also_produces_runnable_messages() -> None:
    find(mutated_envelopes(), _parses, settings=SEARCH)
