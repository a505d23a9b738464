"""Stamping leaves the same options on every task as the real Celery package does, for
each canvas shape, with headers only, with a visitor, and with appended stamps; the wire
headers come from those options; and the replaced-task nesting travels as a header."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import celery
import pytest
from celery.canvas import StampingVisitor as CeleryVisitor

import celeriac
from celeriac.canvas import StampingVisitor
from celeriac.canvas_apply import wire_options

Shape = Callable[[Any, Any, Any], Any]

SHAPES: dict[str, Shape] = {
    "task": lambda lib, add, eb: add.s(1, 2).on_error(eb.s()),
    "chain": lambda lib, add, eb: lib.chain(add.s(1, 2), add.s(3)),
    "group": lambda lib, add, eb: lib.group(add.s(1, 2), add.s(3, 4)),
    "chord": lambda lib, add, eb: lib.chord([add.s(1, 2), add.s(3, 4)], add.s(5)),
    "nested": lambda lib, add, eb: lib.chain(
        add.s(1, 1), lib.group(add.s(1), lib.chain(add.s(2), add.s(3))), add.s(9)
    ),
}


def labels(base: type) -> Any:
    class Labels(base):  # type: ignore[misc]
        def on_signature(self, sig: Any, **headers: Any) -> dict[str, Any]:
            return {"on_sig": "s"}

        def on_group_start(self, group: Any, **headers: Any) -> dict[str, Any]:
            return {"grp": "g"}

        def on_chain_start(self, chain: Any, **headers: Any) -> dict[str, Any]:
            return {"chn": "c"}

        def on_chord_body(self, chord: Any, **headers: Any) -> dict[str, Any]:
            return {"body": "b"}

        def on_errback(self, errback: Any, **headers: Any) -> dict[str, Any]:
            return {"eb": "e"}

    return Labels()


def stamped_leaves(lib: Any, shape: str, mode: str) -> list[Any]:
    if lib is celery:
        app: Any = celery.Celery("stamping_unit", set_as_current=False)
        visitor = labels(CeleryVisitor)
        options = {"shared": False}
    else:
        app = celeriac.Celery("stamping_unit")
        visitor = labels(StampingVisitor)
        options = {}

    def add(x: int, y: int) -> int:
        return x + y

    def errback(*args: Any) -> None:
        return None

    sig = SHAPES[shape](
        lib, app.task(name="u.add", **options)(add), app.task(name="u.eb", **options)(errback)
    )
    if mode == "headers":
        sig.stamp(k1="v1")
    else:
        sig.stamp(visitor=visitor, k1="v1")
        if mode == "append":
            sig.stamp(visitor=visitor, append_stamps=True, k1="v2")
    return leaves(json.loads(json.dumps(sig)))


def leaves(sig: dict[str, Any]) -> list[Any]:
    kind, kwargs = sig.get("subtask_type"), sig["kwargs"]
    if kind in ("chain", "group"):
        return [leaf for task in kwargs["tasks"] for leaf in leaves(task)]
    if kind == "chord":
        header = kwargs["header"]
        tasks = header["kwargs"]["tasks"] if isinstance(header, dict) else header
        return [leaf for task in [*tasks, kwargs["body"]] for leaf in leaves(task)]
    options = dict(sig["options"])
    links = [normal(link["options"]) for link in options.pop("link_error", None) or []]
    return [(sig["task"], normal(options), links)]


def normal(options: dict[str, Any]) -> dict[str, Any]:
    return {k: sorted(v) if k == "stamped_headers" else v for k, v in options.items()}


@pytest.mark.parametrize("mode", ["headers", "visitor", "append"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_stamps_match_celerys(shape: str, mode: str) -> None:
    assert stamped_leaves(celeriac, shape, mode) == stamped_leaves(celery, shape, mode)


def test_stamps_and_nesting_go_out_as_celerys_headers() -> None:
    options = {"stamped_headers": ["batch"], "batch": "b1", "replaced_task_nesting": 2}
    wire = wire_options(options, "u.add")
    assert wire == {
        "headers": {
            "replaced_task_nesting": 2,
            "stamped_headers": ["batch"],
            "stamps": {"batch": "b1"},
        }
    }
