"""Celery's task protocol 1 read into the TaskMessage a protocol 2 message becomes."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import orjson
import pytest

from celeriac import protocol
from celeriac.errors import InvalidMessage

TASK_ID = "ab8b2e4e-952c-49ce-b362-f53b676a73cb"


def v1_envelope(body: dict[str, Any], headers: dict[str, Any] | None = None) -> bytes:
    """A protocol 1 message laid out as a Celery 5.7 client with task_protocol = 1 sends it."""
    return orjson.dumps(
        {
            "body": base64.b64encode(orjson.dumps(body)).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers or {},
            "properties": {
                "correlation_id": body.get("id"),
                "reply_to": "b6ab58bf-62bc-39dc-b4c3-621fd83e0d36",
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": "celery"},
                "priority": 5,
                "body_encoding": "base64",
                "delivery_tag": "f02468f1-4da9-4462-aa87-62412e519f36",
            },
        }
    )


CALLBACK = {"task": "proj.add", "args": [3], "kwargs": {}, "options": {}, "immutable": False}
BODY: dict[str, Any] = {
    "task": "proj.add",
    "id": TASK_ID,
    "args": [1, 1],
    "kwargs": {"z": 2},
    "group": "g1",
    "group_index": 0,
    "retries": 2,
    "eta": "2026-12-07T19:09:55.508746+00:00",
    "expires": "2026-12-07T19:10:24.508746+00:00",
    "utc": True,
    "callbacks": [CALLBACK],
    "errbacks": None,
    "timelimit": [30, 20],
    "taskset": "g1",
    "chord": None,
}


def test_protocol_1_message_parses_into_protocol_2_headers() -> None:
    message = protocol.parse_envelope(v1_envelope(BODY, {"custom": "x"}))
    assert (message.task, message.id) == ("proj.add", TASK_ID)
    assert (message.args, message.kwargs) == ([1, 1], {"z": 2})
    assert message.retries == 2
    assert message.timelimit == (30.0, 20.0)
    assert message.priority == 5
    assert message.eta is not None and message.eta.isoformat() == BODY["eta"]
    assert message.expires is not None
    headers = message.headers
    assert (headers["task"], headers["id"], headers["group"]) == ("proj.add", TASK_ID, "g1")
    assert headers["custom"] == "x"
    assert headers["argsrepr"] == "(1, 1)"
    assert message.embed == {
        "callbacks": [CALLBACK],
        "errbacks": None,
        "chord": None,
        "chain": None,
    }


def test_protocol_1_with_utc_false_reads_a_naive_eta_as_local_time() -> None:
    body = {**BODY, "utc": False, "eta": "2026-12-07T19:09:55"}
    message = protocol.parse_envelope(v1_envelope(body))
    local = datetime.fromisoformat("2026-12-07T19:09:55").astimezone()
    assert message.eta == local


def test_protocol_1_with_missing_args_and_kwargs_runs_with_none() -> None:
    body = {"task": "proj.ping", "id": TASK_ID}
    message = protocol.parse_envelope(v1_envelope(body))
    assert (message.args, message.kwargs, message.retries) == ([], {}, 0)


def test_protocol_1_with_kwargs_not_a_dict_is_invalid_with_its_id() -> None:
    with pytest.raises(InvalidMessage, match="kwargs is list") as caught:
        protocol.parse_envelope(v1_envelope({**BODY, "kwargs": [1]}))
    assert caught.value.task_id == TASK_ID


@pytest.mark.parametrize(
    "body",
    [{"no": "task"}, {"task": "proj.add"}, {"id": TASK_ID}, [[1], {}, {}]],
    ids=["no-task", "no-id", "no-name", "v2-body"],
)
def test_a_body_that_is_neither_protocol_is_not_a_task_message(body: Any) -> None:
    raw = orjson.dumps(
        {
            "body": base64.b64encode(orjson.dumps(body)).decode(),
            "content-type": "application/json",
            "headers": {},
            "properties": {"body_encoding": "base64", "delivery_tag": "t"},
        }
    )
    with pytest.raises(InvalidMessage, match="not a task message"):
        protocol.parse_envelope(raw)
