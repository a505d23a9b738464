"""The send fast paths (issue 8): the cached envelope factory, delay_many/send_many, ids.

Every fast path must put on the wire exactly what the general path would (Celery's format),
so these tests compare the two rather than time anything.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone
from typing import Any

import orjson
import pytest

from celeriac import Celery, protocol
from celeriac.errors import InvalidTaskOptions
from tests.unit.helpers import decoded_body, take_envelopes

OPTIONS = [
    protocol.SendOptions(),
    protocol.SendOptions(
        queue="q",
        routing_key="rk",
        priority=5,
        ignore_result=True,
        root_id="root-1",
        parent_id="parent-1",
        group="g-1",
        group_index=3,
        reply_to="reply",
        shadow="shadow-name",
        retries=2,
        timelimit=(10.0, None),
        eta=datetime(2030, 1, 1, tzinfo=timezone.utc),
        expires=datetime(2031, 1, 1, tzinfo=timezone.utc),
        callbacks=[{"task": "proj.cb", "args": [], "kwargs": {}, "options": {}}],
        chain=[{"task": "proj.next", "args": [], "kwargs": {}, "options": {}}],
    ),
]
CALLS: list[tuple[Any, dict[str, Any]]] = [
    ((1,), {}),
    ([1, 'quote " and é'], {"k": [None, 2.5]}),
    ((), {}),
    (("x" * 2000,), {"long": "y" * 2000}),  # reprs cut at 1024 characters
]


def _without_tag(raw: bytes) -> dict[str, Any]:
    envelope: dict[str, Any] = orjson.loads(raw)
    tag = envelope["properties"].pop("delivery_tag")
    assert uuid.UUID(tag).version == 4
    return envelope


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize(("args", "kwargs"), CALLS)
def test_template_envelope_is_the_dict_envelope(
    options: protocol.SendOptions, args: Any, kwargs: dict[str, Any]
) -> None:
    factory = protocol.EnvelopeFactory("proj.task", options)
    fast = _without_tag(factory.build("id-1", args, kwargs))
    general = _without_tag(factory._build_dict("id-1", args, kwargs))
    assert fast == general


def test_custom_headers_still_override() -> None:
    options = protocol.SendOptions(headers={"retries": 7, "x-custom": [1, 2]})
    envelope = orjson.loads(protocol.build_envelope("proj.task", "id-1", [1], {}, options))
    assert envelope["headers"]["retries"] == 7
    assert envelope["headers"]["x-custom"] == [1, 2]
    assert envelope["headers"]["id"] == "id-1"


def test_new_id_is_a_random_uuid4_and_never_repeats() -> None:
    ids = [protocol.new_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:200]:
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


def test_a_forked_child_never_reuses_its_parents_ids() -> None:
    protocol.new_id()  # the parent has ids made ahead
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        os.write(write, ",".join(protocol.new_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    child_ids = set(os.read(read, 10_000).decode().split(","))
    os.close(read)
    os.waitpid(pid, 0)
    parent_ids = {protocol.new_id() for _ in range(100)}
    assert len(child_ids) == 10
    assert not child_ids & parent_ids


def test_delay_reuses_routing_until_the_configuration_changes(app: Celery) -> None:
    @app.task(name="proj.add")
    def add(x: int, y: int) -> int:
        return x + y

    add.delay(1, 2)
    app.conf.task_ignore_result = True  # a cached factory must not outlive this
    add.delay(3, 4)
    add.queue = "own"  # nor this
    add.delay(5, 6)
    envelopes = take_envelopes(app)
    assert [decoded_body(e)[0] for e in envelopes] == [[1, 2], [3, 4]]
    assert [e["headers"]["ignore_result"] for e in envelopes] == [False, True]
    assert [decoded_body(e)[0] for e in take_envelopes(app, "own")] == [[5, 6]]


def test_delay_gives_each_message_its_own_root_and_ids(app: Celery) -> None:
    @app.task(name="proj.add")
    def add(x: int, y: int) -> int:
        return x + y

    first, second = add.delay(1, 2), add.delay(3, 4)
    envelopes = take_envelopes(app)
    assert [e["headers"]["id"] for e in envelopes] == [first.id, second.id]
    assert [e["headers"]["root_id"] for e in envelopes] == [first.id, second.id]
    assert [e["properties"]["correlation_id"] for e in envelopes] == [first.id, second.id]
    tags = {e["properties"]["delivery_tag"] for e in envelopes}
    assert len(tags) == 2


def test_delay_many_sends_what_delay_sends(app: Celery) -> None:
    @app.task(name="proj.add")
    def add(x: int, y: int, scale: int = 1) -> int:
        return (x + y) * scale

    one = add.delay(1, 2)
    [single] = take_envelopes(app)
    results = add.delay_many([(1, 2), (3, 4), [5, 6]])
    envelopes = take_envelopes(app)
    assert [r.id for r in results] == [e["headers"]["id"] for e in envelopes]
    assert [decoded_body(e)[0] for e in envelopes] == [[1, 2], [3, 4], [5, 6]]
    assert [e["headers"]["root_id"] for e in envelopes] == [r.id for r in results]

    def comparable(envelope: dict[str, Any], task_id: str) -> dict[str, Any]:
        text = orjson.dumps(envelope).decode().replace(task_id, "ID")
        data: dict[str, Any] = orjson.loads(text)
        data["properties"].pop("delivery_tag")
        data["headers"].pop("argsrepr")
        data.pop("body")
        return data

    assert comparable(envelopes[0], results[0].id) == comparable(single, one.id)


def test_apply_many_takes_options_and_kwargs(app: Celery) -> None:
    @app.task(name="proj.add")
    def add(x: int, y: int, scale: int = 1) -> int:
        return (x + y) * scale

    add.apply_many([(1, 2), (3, 4)], {"scale": 2}, queue="slow", priority=3)
    envelopes = take_envelopes(app, "slow")
    assert [decoded_body(e)[:2] for e in envelopes] == [
        [[1, 2], {"scale": 2}],
        [[3, 4], {"scale": 2}],
    ]
    assert {e["properties"]["priority"] for e in envelopes} == {3}


def test_send_many_checks_arguments_and_options_before_sending(app: Celery) -> None:
    @app.task(name="proj.add")
    def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(TypeError):
        add.delay_many([(1, 2), (1, 2, 3)])
    with pytest.raises(InvalidTaskOptions):
        app.send_many("proj.add", [(1, 2)], task_id="fixed")
    with pytest.raises(InvalidTaskOptions):
        app.send_many("proj.add", [(1, 2)], no_such_option=1)
    assert app.send_many("proj.add", []) == []


def test_send_many_by_name_routes_like_send_task(app: Celery) -> None:
    app.conf.task_routes = {"proj.remote": {"queue": "remote"}}
    results = app.send_many("proj.remote", [(i,) for i in range(2500)])  # several batches
    envelopes = take_envelopes(app, "remote") + take_envelopes(app, "remote")
    envelopes += take_envelopes(app, "remote")
    assert [e["headers"]["id"] for e in envelopes] == [r.id for r in results]
    assert [decoded_body(e)[0] for e in envelopes] == [[i] for i in range(2500)]


def test_arguments_check_fast_path_agrees_with_bind(app: Celery) -> None:
    @app.task(name="proj.f")
    def f(a: int, b: int = 2, *, c: int = 3) -> int:
        return a + b + c

    @app.task(name="proj.g")
    def g(a: int, *, required: int) -> int:
        return a + required

    f.check_arguments((1,), {})
    f.check_arguments((1, 2), {})
    with pytest.raises(TypeError):
        f.check_arguments((), {})
    with pytest.raises(TypeError):
        f.check_arguments((1, 2, 3), {})
    with pytest.raises(TypeError):
        g.check_arguments((1,), {})
    g.check_arguments((1,), {"required": 2})
