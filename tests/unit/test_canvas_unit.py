"""Signatures and canvas construction: Celery's API, and the same dict form as the real
celery package builds for the same expression (that dict is what travels in messages)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import celery
import pytest

import celeriac
from celeriac.canvas import Signature, chain, chord, group, maybe_signature, signature
from tests.support.canvas_tasks import CanvasTasks, define_tasks

Build = Callable[[CanvasTasks, Any], Any]


@pytest.fixture(scope="module")
def ours() -> Iterator[CanvasTasks]:
    app = celeriac.Celery("unit", broker="memory://", backend="memory://")
    yield define_tasks(app)
    app.close()


@pytest.fixture(scope="module")
def theirs() -> Iterator[CanvasTasks]:
    app = celery.Celery("unit", set_as_current=False)
    yield define_tasks(app)
    app.close()


def plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=list))


CASES: dict[str, Build] = {
    "s": lambda t, m: t.add.s(1, 2),
    "si": lambda t, m: t.add.si(1, y=2),
    "set": lambda t, m: t.add.s(1).set(queue="q", countdown=3, priority=5),
    "clone_partial": lambda t, m: t.add.s(1).clone((2,), {"z": 1}),
    "clone_immutable": lambda t, m: t.add.si(1, 2).clone((9,)),
    "on_error": lambda t, m: t.add.s(1, 2).on_error(t.identity.si("failed")),
    "link": lambda t, m: t.add.s(1, 2).set(link=[t.mul.s(2)]),
    "chain": lambda t, m: m.chain(t.add.s(1, 2), t.add.s(3), t.tsum.s()),
    "pipe": lambda t, m: t.add.s(1, 2) | t.add.s(3) | t.mul.s(4),
    "chain_of_chains": lambda t, m: m.chain(t.add.s(1, 2), m.chain(t.add.s(3), t.add.s(4))),
    "group": lambda t, m: m.group(t.add.s(1, 2), t.add.s(3, 4)),
    "group_of_list": lambda t, m: m.group([t.add.s(i, i) for i in range(3)]),
    "group_of_chains": lambda t, m: m.group(t.add.s(1, 2) | t.add.s(3), t.add.s(2, 2)),
    "chord": lambda t, m: m.chord([t.add.s(1, 2), t.add.s(3, 4)], t.tsum.s()),
    "chord_of_group": lambda t, m: m.chord(m.group(t.add.s(1, 2), t.add.s(2, 2)), t.tsum.s()),
    "group_pipe_task": lambda t, m: m.group(t.add.s(1, 2), t.add.s(3, 4)) | t.tsum.s(),
    "chord_pipe_task": lambda t, m: m.chord([t.add.s(1, 2)], t.tsum.s()) | t.add.s(1),
    "chain_with_group": lambda t, m: m.chain(
        t.add.s(1, 2), m.group(t.add.s(1), t.add.s(2)), t.tsum.s()
    ),
    "chain_with_chord_then_task": lambda t, m: m.chain(
        t.add.s(1, 2), m.chord([t.add.s(1)], t.tsum.s()), t.add.s(5)
    ),
    "chain_two_chords": lambda t, m: m.chain(
        m.group(t.add.s(1, 2), t.add.s(1, 1)),
        t.tsum.s(),
        m.group(t.add.s(1), t.add.s(2)),
        t.tsum.s(),
    ),
    "one_task_group_unrolled": lambda t, m: m.chain(t.add.s(1, 2), m.group(t.add.s(3))),
    "task_pipe_group": lambda t, m: t.add.s(1, 2) | m.group(t.add.s(3), t.add.s(4)),
    "map": lambda t, m: t.identity.map([1, 2]),
    "starmap": lambda t, m: t.add.starmap([(1, 2), (3, 4)]),
    "chunks": lambda t, m: t.add.chunks([(1, 2), (3, 4), (5, 6)], 2),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_dict_form_equals_celerys(name: str, ours: CanvasTasks, theirs: CanvasTasks) -> None:
    build = CASES[name]
    assert plain(build(ours, celeriac)) == plain(build(theirs, celery))


@pytest.mark.parametrize("name", sorted(CASES))
def test_celerys_dict_rebuilds_the_same_canvas_here(
    name: str, ours: CanvasTasks, theirs: CanvasTasks
) -> None:
    theirs_dict = plain(CASES[name](theirs, celery))
    rebuilt = signature(theirs_dict)
    celerys = celery.signature(plain(theirs_dict))  # Celery rebuilds in place: a copy
    assert type(rebuilt).__name__ == type(celerys).__name__.lstrip("_")
    assert plain(rebuilt) == theirs_dict


def test_celery_rebuilds_our_chord_dict_as_a_chord(ours: CanvasTasks) -> None:
    data = plain(chord([ours.add.s(1, 2), ours.add.s(3, 4)], ours.tsum.s()))
    rebuilt = celery.signature(data)
    assert isinstance(rebuilt, celery.chord)
    assert [task["args"] for task in rebuilt.tasks] == [[1, 2], [3, 4]]
    assert rebuilt.body["task"] == "canvas.tsum"


def test_s_is_a_partial_call_that_later_args_go_in_front_of(ours: CanvasTasks) -> None:
    sig = ours.add.s(2)
    assert sig.args == (2,)
    assert sig.clone((1,)).args == (1, 2)
    assert sig.clone(kwargs={"y": 5}).kwargs == {"y": 5}
    assert sig(40) == 42  # calls the function here
    assert not sig.immutable


def test_si_keeps_its_own_args(ours: CanvasTasks) -> None:
    sig = ours.add.si(1, 2)
    assert sig.immutable
    assert sig.clone((99,), {"y": 0}).args == (1, 2)
    assert sig.clone((99,), {"y": 0}).kwargs == {}
    assert repr(sig) == "%canvas.add(1, 2)"


def test_set_updates_options_and_returns_the_same_signature(ours: CanvasTasks) -> None:
    sig = ours.add.s(1, 2)
    assert sig.set(queue="q", countdown=3) is sig
    assert sig.options == {"queue": "q", "countdown": 3}
    sig.set(immutable=True)
    assert sig.immutable and "immutable" not in sig.options


def test_clone_copies_nested_options_instead_of_sharing_them(ours: CanvasTasks) -> None:
    sig = ours.add.s(1, 2).set(headers={"a": 1})
    copied = sig.clone()
    copied.options["headers"]["a"] = 2
    copied.set(queue="elsewhere")
    assert sig.options == {"headers": {"a": 1}}
    assert copied == ours.add.s(1, 2).set(headers={"a": 2}, queue="elsewhere")


def test_signature_from_a_name_and_from_a_dict(ours: CanvasTasks) -> None:
    by_name = signature("canvas.add", args=(1,), kwargs={"y": 2}, options={"queue": "q"})
    assert plain(by_name) == plain(ours.add.s(1, y=2).set(queue="q"))
    assert maybe_signature(None) is None
    assert isinstance(maybe_signature(plain(by_name)), Signature)
    copied = signature(by_name)
    assert copied == by_name and copied is not by_name


def test_pipe_of_tasks_is_one_flat_chain(ours: CanvasTasks) -> None:
    t = ours
    workflow = t.add.s(1, 2) | t.add.s(3) | (t.add.s(4) | t.mul.s(5))
    assert isinstance(workflow, chain)
    assert [task.task for task in workflow.tasks] == [
        "canvas.add",
        "canvas.add",
        "canvas.add",
        "canvas.mul",
    ]


def test_group_piped_into_a_task_is_a_chord_with_that_body(ours: CanvasTasks) -> None:
    workflow = group(ours.add.s(1, 2), ours.add.s(3, 4)) | ours.tsum.s()
    assert isinstance(workflow, chord)
    assert [task.args for task in workflow.tasks] == [(1, 2), (3, 4)]
    assert workflow.body is not None and workflow.body.task == "canvas.tsum"


def test_chain_turns_a_group_and_the_next_step_into_a_chord(ours: CanvasTasks) -> None:
    t = ours
    workflow = chain(t.add.s(1, 1), group(t.add.s(1), t.add.s(2)), t.tsum.s(), t.mul.s(3))
    first, second = workflow.tasks
    assert first.task == "canvas.add"
    assert isinstance(second, chord)
    assert isinstance(second.body, chain)
    assert [task.task for task in second.body.tasks] == ["canvas.tsum", "canvas.mul"]


def test_building_a_chain_does_not_change_the_chord_given_to_it(ours: CanvasTasks) -> None:
    inner = chord([ours.add.s(1, 1)], ours.tsum.s())
    chain(inner, ours.mul.s(2))
    assert inner.body == ours.tsum.s()


def test_group_link_error_reaches_every_member(ours: CanvasTasks) -> None:
    g = group(ours.add.s(1, 2), ours.add.s(3, 4))
    g.link_error(ours.identity.s())
    assert all(task.options["link_error"] == [ours.identity.s()] for task in g.tasks)


def test_chord_without_a_body_cannot_be_sent(ours: CanvasTasks) -> None:
    with pytest.raises(TypeError, match="no body"):
        chord([ours.add.s(1, 2)]).apply_async()


def test_chunks_split_the_items_into_starmap_calls(ours: CanvasTasks) -> None:
    parts = ours.add.chunks([(1, 2), (3, 4), (5, 6)], 2).group()
    assert [task.task for task in parts.tasks] == ["celery.starmap", "celery.starmap"]
    assert [task.kwargs["it"] for task in parts.tasks] == [[(1, 2), (3, 4)], [(5, 6)]]
    with pytest.raises(ValueError, match="at least 1"):
        ours.add.chunks([(1, 2)], 0)


def test_app_signature_binds_the_app_and_matches_celery_s_dict() -> None:
    app = celeriac.Celery("unit-sig", broker="memory://", backend="memory://")
    theirs = celery.Celery("unit-sig", set_as_current=False)
    ours_sig = app.signature("tasks.add", (2, 2), {"z": 1}, countdown=3)
    assert ours_sig.app is app
    assert json.loads(json.dumps(dict(ours_sig))) == json.loads(
        json.dumps(dict(theirs.signature("tasks.add", (2, 2), {"z": 1}, countdown=3)))
    )
