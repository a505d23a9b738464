"""The parts of remote control that need no worker: the CLI's argument rule and reply
rendering (Celery's), and the state a prefork manager shares with its children."""

from __future__ import annotations

import os
from typing import Any

import click
import orjson
import pytest

from celeriac import Celery
from celeriac.cli.inspect_cmd import CONTROL, INSPECT, compile_arguments, pretty
from celeriac.worker.consumed_queues import ConsumedQueues
from celeriac.worker.task_book import Cells


def test_arguments_fill_in_order_and_the_rest_goes_to_the_variadic_one() -> None:
    assert compile_arguments("time_limit", CONTROL["time_limit"], ["t.add", "5", "10"]) == {
        "task_name": "t.add",
        "soft": 5.0,
        "hard": 10.0,
    }
    assert compile_arguments("terminate", CONTROL["terminate"], ["KILL", "a", "b"]) == {
        "signal": "KILL",
        "task_id": ["a", "b"],
    }
    assert compile_arguments("query_task", INSPECT["query_task"], ["x"]) == {"ids": ["x"]}
    assert compile_arguments("pool_grow", CONTROL["pool_grow"], []) == {}
    with pytest.raises(click.UsageError, match="takes arguments: <queue>"):
        compile_arguments("cancel_consumer", CONTROL["cancel_consumer"], ["a", "b"])
    with pytest.raises(click.UsageError, match="pool_grow: n 'two' is not valid"):
        compile_arguments("pool_grow", CONTROL["pool_grow"], ["two"])


def test_replies_render_as_celery_renders_them() -> None:
    assert pretty({"ok": "pong"}) == ("OK", "pong")
    assert pretty({"error": "unknown task"}) == ("ERROR", "unknown task")
    assert pretty([]) == ("OK", "- empty -")
    assert pretty(["t.add", "t.mul"]) == ("OK", "* t.add\n* t.mul")
    status, body = pretty({"total": {"t.add": 2}})
    assert status == "OK" and orjson.loads(body) == {"total": {"t.add": 2}}


def _in_child(action: Any) -> int:
    """Run *action* in a forked child; its exit code."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            code = int(action())
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_consumed_queues_and_task_settings_reach_a_forked_child() -> None:
    shared = ConsumedQueues(["celery"])
    app = Celery("rc_unit")

    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    seen = shared.version
    assert shared.add("extra") and not shared.add("extra")
    shared.set_task("t.add", rate_limit="10/m", time_limit=5.0)
    assert shared.version > seen

    def child() -> int:
        queues = shared.follow(app)
        ok = queues == ["celery", "extra"] and add.rate_limit == "10/m" and add.time_limit == 5.0
        shared.remove("celery")  # a change made in the child is seen by the parent too
        return 0 if ok else 3

    assert _in_child(child) == 0
    assert shared.names() == ["extra"]
    assert not shared.remove("nope")


def test_a_child_cell_carries_its_running_task_and_counts_to_the_manager() -> None:
    cells = Cells(2)
    envelope = {
        "body": "W1sxLCAyXSwge30sIHt9XQ==",  # base64 of [[1, 2], {}, {}]
        "content-type": "application/json",
        "content-encoding": "utf-8",
        "headers": {"id": "task-1", "task": "t.add", "lang": "py"},
        "properties": {
            "body_encoding": "base64",
            "delivery_tag": "tag-1",
            "delivery_info": {"exchange": "", "routing_key": "celery"},
            "priority": 0,
        },
    }

    def child() -> int:
        counted = cells.started_process(1)
        cells.set_active(
            1, orjson.dumps(["celery", True, {"pid": os.getpid()}, 12.5]), orjson.dumps(envelope)
        )
        cells.set_count(1, 0, "t.add", 3)
        cells.set_scheduled(1, [{"eta": "2999-01-01T00:00:00", "eta_s": 3e10, "request": {}}])
        return 0 if counted == {} else 3

    assert _in_child(child) == 0
    record = cells.read(1, "w@h", "task-1")
    assert record["total"] == {"t.add": 3}
    assert record["pid"] is not None and record["child_index"] == 1
    (info,) = record["active"]
    assert info["id"] == "task-1" and info["args"] == [1, 2] and info["time_start"] == 12.5
    assert info["acknowledged"] is True and info["worker_pid"] == record["pid"]
    assert record["scheduled"][0]["eta"] == "2999-01-01T00:00:00"
    # the pool's table names another task: the cell has moved on, nothing is made up
    assert cells.read(1, "w@h", "task-2")["active"] == []
    assert cells.read(0, "w@h", None) == {
        "pid": None,
        "child_index": 0,
        "active": [],
        "total": {},
        "scheduled": [],
        "finished": [],
    }
