"""Readiness from the consume loops' pulse table, and ``status --exit-code``'s verdict."""

from __future__ import annotations

import time

from celeriac.metrics import progress
from celeriac.metrics.health import check
from celeriac.metrics.progress import ProgressTable
from celeriac.metrics.status_check import not_ready


def _table_with_children(count: int) -> tuple[ProgressTable, list[progress.Pulse]]:
    table = ProgressTable(1 + count)
    table.broker_ok()
    return table, [table.slot(i) for i in range(count)]


def test_fresh_loops_and_a_live_broker_are_ready() -> None:
    table, _ = _table_with_children(2)
    answer = check(table, within_s=5.0)
    assert answer.ready, answer.reasons
    assert set(answer.loop_ages) == {"0", "1"}
    assert answer.text() == "ready\n"


def test_a_stuck_loop_is_named() -> None:
    table, pulses = _table_with_children(2)
    later = time.monotonic() + 6.0
    pulses[0].busy(True)  # running a task in the loop's thread: not stuck
    table.broker_ok()
    answer = check(table, within_s=5.0, now=later)
    assert not answer.ready
    assert any("child 1: consume loop stuck" in r for r in answer.reasons)
    assert not any("child 0" in r for r in answer.reasons)
    assert "no heartbeat reached the broker" in " ".join(answer.reasons)


def test_failing_broker_calls_are_not_ready_until_one_succeeds() -> None:
    table, pulses = _table_with_children(1)
    pulses[0].failing(True)
    assert "broker calls failing" in check(table).text()
    pulses[0].failing(False)
    assert check(table).ready


def test_no_loop_and_no_heartbeat_yet() -> None:
    table = ProgressTable(3)
    answer = check(table)
    assert not answer.ready
    assert "no consume loop is running yet" in answer.reasons
    assert "the broker has not answered a heartbeat yet" in answer.reasons


def test_a_loop_that_left_is_not_watched() -> None:
    table, pulses = _table_with_children(2)
    pulses[1].leave()
    assert set(check(table).loop_ages) == {"0"}


def test_the_solo_loop_uses_slot_zero() -> None:
    table = ProgressTable(1)
    table.broker_ok()
    table.slot(None).beat()
    assert set(check(table).loop_ages) == {""}


def test_without_a_table_the_consumer_gets_no_pulse() -> None:
    progress.disable()
    assert progress.for_this_process(None) is None
    progress.broker_ok()  # a no-op, not an error


def test_status_verdict() -> None:
    pings = [{"w1@h": {"ok": "pong"}}]
    assert not_ready(pings, [{"w1@h": {"ready": True, "reasons": []}}], ["w1@h"]) == []
    # no --metrics-port, or a Celery worker: the ping is all there is
    assert not_ready(pings, [{"w1@h": {"ready": None}}], None) == []
    assert not_ready(pings, [{"w1@h": {"error": "unknown command"}}], None) == []
    missing = not_ready(pings, [], ["w1@h", "w2@h"])
    assert missing == ["w2@h: no answer within the timeout"]
    stuck = not_ready(pings, [{"w1@h": {"ready": False, "reasons": ["child 0: stuck"]}}], None)
    assert stuck == ["w1@h: not ready: child 0: stuck"]
    assert not_ready([], [], None) == ["no worker answered within the timeout"]
