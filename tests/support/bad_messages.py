"""Malformed queue items for fuzzing a live worker: every kind of envelope a worker must refuse
(dead-letter) rather than run, crash on, or loop on. Built from the wire spec by hand, not
from celeriac's own builder, with a seeded RNG so a failing run can be replayed.

Only messages that must end in the dead-letter list are made here: arguments that do not fit
the function, for example, are a task failure (acked), not a bad message.
"""

from __future__ import annotations

import base64
import pickle
import random
import string
import uuid
from collections.abc import Callable
from typing import Any

import orjson

Mutation = Callable[[random.Random, dict[str, Any]], Any]


def envelope(task_id: str, task: str, args: list[Any], queue: str = "celery") -> dict[str, Any]:
    """A valid Celery 5 task message (spec §2), as a dict to mutate."""
    body = [args, {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    return {
        "body": base64.b64encode(orjson.dumps(body)).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"lang": "py", "task": task, "id": task_id, "retries": 0, "root_id": task_id},
        "properties": {
            "correlation_id": task_id,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }


def _text(rng: random.Random, size: int = 12) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(size))


def _junk_value(rng: random.Random) -> Any:
    return rng.choice([None, 7, -1.5, True, "", _text(rng), [1, "x"], {"k": _text(rng)}])


def _not_a(kind: type, rng: random.Random) -> Any:
    while True:
        value = _junk_value(rng)
        if not isinstance(value, kind) or (kind is str and value == ""):
            return value


def _body(rng: random.Random, message: dict[str, Any], decoded: bytes) -> None:
    message["body"] = base64.b64encode(decoded).decode()


# each mutation edits the message in place (returns None) or returns the raw bytes to push;
# leaving out properties, the delivery tag or the content type is not among them: the worker
# runs such hand-written messages (tests/integration/test_hardening_input.py)
MUTATIONS: dict[str, Mutation] = {
    "not json (text)": lambda rng, m: f"not json {_text(rng)}".encode(),
    "not json (bytes)": lambda rng, m: bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))),
    "truncated json": lambda rng, m: (raw := orjson.dumps(m))[: rng.randrange(1, len(raw) - 1)],
    "json array": lambda rng, m: orjson.dumps([m]),
    "json scalar": lambda rng, m: orjson.dumps(rng.choice([42, "text", None, True, 1.5])),
    "properties not an object": lambda rng, m: m.update(properties=_not_a(dict, rng)),
    "delivery tag not a string": lambda rng, m: m["properties"].update(
        delivery_tag=_not_a(str, rng)
    ),
    "delivery_info not an object": lambda rng, m: m["properties"].update(
        delivery_info=rng.choice(["celery", 5, [1]])
    ),
    "no headers": lambda rng, m: m.pop("headers"),
    "headers not an object": lambda rng, m: m.update(headers=_not_a(dict, rng)),
    "no task header": lambda rng, m: m["headers"].pop("task"),
    "task header not a string": lambda rng, m: m["headers"].update(task=_not_a(str, rng)),
    "no id header": lambda rng, m: m["headers"].pop("id"),
    "id header not a string": lambda rng, m: m["headers"].update(id=_not_a(str, rng)),
    "content type not a string": lambda rng, m: m.update({"content-type": rng.choice([5, [1]])}),
    "unknown content type": lambda rng, m: m.update(
        {"content-type": f"application/x-{_text(rng, 6).lower()}"}
    ),
    "pickle content type": lambda rng, m: m.update(
        {
            "content-type": "application/x-python-serialize",
            "body": base64.b64encode(pickle.dumps([[1], {}, None])).decode(),
        }
    ),
    "body not a string": lambda rng, m: m.update(body=_not_a(str, rng)),
    "body not base64": lambda rng, m: m.update(body=f"!!{_text(rng)}%%"),
    "body base64 of non-json": lambda rng, m: _body(rng, m, f"<{_text(rng)}>".encode()),
    "body not a list": lambda rng, m: _body(rng, m, orjson.dumps({"args": [1]})),
    "body list of wrong length": lambda rng, m: _body(
        rng, m, orjson.dumps([[1], {}, None, 4][: rng.choice([0, 1, 2, 4])])
    ),
    "args not a list": lambda rng, m: _body(rng, m, orjson.dumps([_not_a(list, rng), {}, None])),
    "kwargs not an object": lambda rng, m: _body(
        rng, m, orjson.dumps([[1], _not_a(dict, rng), None])
    ),
    "embed not an object": lambda rng, m: _body(rng, m, orjson.dumps([[1], {}, [1, 2]])),
    "unknown body encoding": lambda rng, m: m["properties"].update(body_encoding="rot13"),
    "unknown task name": lambda rng, m: m["headers"].update(task=f"fuzz.nope.{_text(rng, 6)}"),
}


def bad_message(rng: random.Random, task: str, args: list[Any]) -> tuple[str, bytes]:
    """(kind, raw) for one malformed message made from a valid one for *task*."""
    kind = rng.choice(sorted(MUTATIONS))
    message = envelope(f"fuzz-{uuid.uuid4()}", task, args)
    built = MUTATIONS[kind](rng, message)
    raw = built if isinstance(built, bytes) else orjson.dumps(message)
    return kind, raw
