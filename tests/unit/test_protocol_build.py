"""What a client puts on the queue: the envelope of spec §2 and the v2 headers of §3."""

from __future__ import annotations

import base64
import os
import socket
import uuid
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from celeriac import Celery, protocol
from celeriac.brokers import priority_key
from celeriac.brokers.memory import store_for
from celeriac.errors import InvalidTaskOptions
from tests.unit.helpers import decoded_body, take_envelopes

SPEC_HEADER_KEYS = {
    "lang",
    "task",
    "id",
    "shadow",
    "eta",
    "expires",
    "group",
    "group_index",
    "retries",
    "timelimit",
    "root_id",
    "parent_id",
    "argsrepr",
    "kwargsrepr",
    "origin",
    "ignore_result",
    "replaced_task_nesting",
    "stamped_headers",
    "stamps",
}
SPEC_PROPERTY_KEYS = {
    "correlation_id",
    "reply_to",
    "delivery_mode",
    "delivery_info",
    "priority",
    "body_encoding",
    "delivery_tag",
}


def _envelope() -> dict[str, object]:
    raw = protocol.build_envelope(
        "proj.add", "17dc70a6-cec4-4b7a-bda2-d2831d62f343", [2, 3], {}, protocol.SendOptions()
    )
    return orjson.loads(raw)  # type: ignore[no-any-return]


def test_envelope_top_level_keys_are_celerys() -> None:
    envelope = _envelope()
    assert set(envelope) == {"body", "content-encoding", "content-type", "headers", "properties"}


def test_envelope_declares_json_in_utf8() -> None:
    envelope = _envelope()
    assert envelope["content-type"] == "application/json"
    assert envelope["content-encoding"] == "utf-8"


def test_body_is_base64_of_args_kwargs_and_empty_embed() -> None:
    envelope = _envelope()
    body = orjson.loads(base64.b64decode(envelope["body"]))  # type: ignore[arg-type]
    assert body == [[2, 3], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]


def test_headers_are_exactly_the_v2_header_set() -> None:
    headers = _envelope()["headers"]
    assert set(headers) == SPEC_HEADER_KEYS  # type: ignore[arg-type]


def test_headers_of_a_plain_send_match_the_captured_celery_message() -> None:
    headers = _envelope()["headers"]
    task_id = "17dc70a6-cec4-4b7a-bda2-d2831d62f343"
    assert headers == {
        "lang": "py",
        "task": "proj.add",
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": "(2, 3)",
        "kwargsrepr": "{}",
        "origin": f"gen{os.getpid()}@{socket.gethostname()}",
        "ignore_result": False,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }


def test_properties_are_exactly_the_spec_property_set() -> None:
    properties = _envelope()["properties"]
    assert set(properties) == SPEC_PROPERTY_KEYS  # type: ignore[arg-type]


def test_properties_route_through_the_anonymous_exchange_by_queue_name() -> None:
    properties = _envelope()["properties"]
    assert properties["delivery_info"] == {"exchange": "", "routing_key": "celery"}  # type: ignore[index]
    assert properties["delivery_mode"] == 2  # type: ignore[index]
    assert properties["priority"] == 0  # type: ignore[index]
    assert properties["body_encoding"] == "base64"  # type: ignore[index]


def test_correlation_id_is_the_task_id() -> None:
    properties = _envelope()["properties"]
    assert properties["correlation_id"] == "17dc70a6-cec4-4b7a-bda2-d2831d62f343"  # type: ignore[index]


def test_delivery_tag_is_a_fresh_uuid4_per_message() -> None:
    first = _envelope()["properties"]["delivery_tag"]  # type: ignore[index]
    second = _envelope()["properties"]["delivery_tag"]  # type: ignore[index]
    assert uuid.UUID(first).version == 4
    assert first != second


def test_pickle_body_is_marked_binary() -> None:
    raw = protocol.build_envelope(
        "proj.add",
        "id-1",
        [1],
        {},
        protocol.SendOptions(),
        content_type="application/x-python-serialize",
    )
    envelope = orjson.loads(raw)
    assert envelope["content-type"] == "application/x-python-serialize"
    assert envelope["content-encoding"] == "binary"


def test_send_task_puts_args_and_kwargs_in_the_body(app: Celery) -> None:
    app.send_task("proj.add", (2,), {"y": 3})
    (envelope,) = take_envelopes(app)
    args, kwargs, _embed = decoded_body(envelope)
    assert (args, kwargs) == ([2], {"y": 3})


def test_send_task_header_id_is_the_result_id(app: Celery) -> None:
    result = app.send_task("proj.add", (2, 3))
    (envelope,) = take_envelopes(app)
    assert envelope["headers"]["id"] == result.id


def test_countdown_becomes_an_absolute_eta_in_iso_with_offset(app: Celery) -> None:
    before = datetime.now(timezone.utc)
    app.send_task("proj.add", (2, 3), countdown=30)
    (envelope,) = take_envelopes(app)
    eta = datetime.fromisoformat(envelope["headers"]["eta"])
    assert eta.utcoffset() == timedelta(0)
    assert (
        before + timedelta(seconds=30) <= eta <= datetime.now(timezone.utc) + timedelta(seconds=30)
    )


def test_eta_datetime_is_sent_in_iso_with_its_offset(app: Celery) -> None:
    eta = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
    app.send_task("proj.add", (2, 3), eta=eta)
    (envelope,) = take_envelopes(app)
    assert envelope["headers"]["eta"] == "2031-05-06T07:08:09.123456+02:00"


def test_naive_eta_is_taken_as_utc(app: Celery) -> None:
    app.send_task("proj.add", (2, 3), eta=datetime(2031, 5, 6, 7, 8, 9))
    (envelope,) = take_envelopes(app)
    assert envelope["headers"]["eta"] == "2031-05-06T07:08:09+00:00"


def test_numeric_expires_becomes_an_absolute_time_in_iso_with_offset(app: Celery) -> None:
    before = datetime.now(timezone.utc)
    app.send_task("proj.add", (2, 3), expires=120)
    (envelope,) = take_envelopes(app)
    expires = datetime.fromisoformat(envelope["headers"]["expires"])
    assert expires.utcoffset() == timedelta(0)
    assert (
        before + timedelta(seconds=120)
        <= expires
        <= datetime.now(timezone.utc) + timedelta(seconds=120)
    )


def test_time_limits_go_in_timelimit_as_hard_then_soft(app: Celery) -> None:
    app.send_task("proj.add", (2, 3), time_limit=10, soft_time_limit=5)
    (envelope,) = take_envelopes(app)
    assert envelope["headers"]["timelimit"] == [10, 5]


def test_extra_headers_are_merged_into_the_v2_headers(app: Celery) -> None:
    app.send_task("proj.add", (2, 3), headers={"tenant": "acme"})
    (envelope,) = take_envelopes(app)
    assert envelope["headers"]["tenant"] == "acme"
    assert envelope["headers"]["task"] == "proj.add"


@pytest.mark.parametrize(
    ("priority", "key"),
    [
        (0, "celery"),
        (2, "celery"),
        (3, "celery\x06\x163"),
        (5, "celery\x06\x163"),
        (6, "celery\x06\x166"),
        (8, "celery\x06\x166"),
        (9, "celery\x06\x169"),
    ],
)
def test_priority_picks_the_redis_list_by_step(priority: int, key: str) -> None:
    assert priority_key("celery", priority) == key


def test_send_task_with_priority_five_lands_in_the_step_three_list(
    app: Celery, memory_url: str
) -> None:
    app.send_task("proj.add", (2, 3), priority=5)
    lists = {key: len(items) for key, items in store_for(memory_url).queues.items() if items}
    assert lists == {"celery\x06\x163": 1}


def test_priority_is_kept_in_the_properties(app: Celery) -> None:
    app.send_task("proj.add", (2, 3), priority=5)
    (envelope,) = take_envelopes(app)
    assert envelope["properties"]["priority"] == 5


def test_priority_above_nine_is_clamped_to_nine(app: Celery) -> None:
    app.send_task("proj.add", (2, 3), priority=12)
    (envelope,) = take_envelopes(app)
    assert envelope["properties"]["priority"] == 9


@pytest.mark.parametrize("priority", [-1, True, "5", 2.5])
def test_priority_that_is_not_an_integer_from_zero_raises_invalid_task_options(
    app: Celery, priority: object
) -> None:
    with pytest.raises(InvalidTaskOptions, match="priority"):
        app.send_task("proj.add", (2, 3), priority=priority)


def test_unknown_send_option_raises_naming_it(app: Celery) -> None:
    with pytest.raises(InvalidTaskOptions, match="countdwn"):
        app.send_task("proj.add", (2, 3), countdwn=5)
