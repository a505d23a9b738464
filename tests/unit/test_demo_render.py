"""render.py and the JSON output: measured facts reach the reader, contradictions show."""

from __future__ import annotations

import orjson
from rich.console import Console

from celeriac.demo.checks import check
from celeriac.demo.main import report_json
from celeriac.demo.measure import measure
from celeriac.demo.model import Check, DemoReport, PoolReport
from celeriac.demo.render import compact_connections, render
from tests.unit.test_demo_measure import MANAGER, healthy


def report_for(*pools: PoolReport) -> DemoReport:
    return DemoReport(
        celeriac="0",
        broker="sqlite:///x",
        cpu_count=2,
        cpu_batch={"tasks": 8},
        io_batch={"tasks": 20},
        pools=list(pools),
    )


def measured(pool: str) -> PoolReport:
    facts = measure(healthy(pool))
    checks = check(facts)
    return PoolReport(pool, "ok", facts=facts, checks=checks)


def rendered(report: DemoReport) -> str:
    console = Console(record=True, width=200, color_system=None)
    render(report, console)
    return console.export_text()


def test_prefork_tree_shows_manager_and_each_child_with_its_tasks() -> None:
    text = rendered(report_for(measured("prefork")))
    assert f"进程 PID {MANAGER} (主进程 - Manager)" in text
    for index, pid in enumerate(range(MANAGER + 1, MANAGER + 5)):
        assert f"子进程 PID {pid} (Worker-{index + 1})" in text
    assert "celeriac.child0.1001 (broker)" in text
    assert "Every measurement agrees with the seed's table." in text


def test_single_process_tree_lists_greenlets_under_the_os_thread() -> None:
    text = rendered(report_for(measured("gevent")))
    assert "主进程 - 唯一进程" in text
    assert "协程 greenlet 500: cpu_bound" in text
    assert "… 22 more" in text


def test_table_compares_with_solo_when_solo_ran() -> None:
    text = rendered(report_for(measured("solo"), measured("gevent")))
    assert "vs solo" in text
    assert "对比总结" in text


def test_a_contradiction_is_marked_and_summarised() -> None:
    bad = measured("solo")
    bad.status = "contradiction"
    bad.checks.append(Check("concurrency", "sequential", "up to 3 at once", False))
    text = rendered(report_for(bad))
    assert "✗ concurrency" in text
    assert "contradict the seed's table" in text


def test_a_skipped_pool_shows_the_install_command() -> None:
    skipped = PoolReport("gevent", "skipped", reason="gevent is not installed", install="pip x")
    text = rendered(report_for(skipped))
    assert "skipped: gevent is not installed" in text
    assert "pip x" in text


def test_compact_connections_groups_one_process_s_sockets() -> None:
    text = compact_connections(
        ["c.1 (broker)", "c.1:wake (broker)", "c.1:watch (broker)", "c.1:results (backend)"]
    )
    assert text == "c.1 +:wake +:watch (broker), c.1:results (backend)"


def test_json_holds_the_same_facts_and_the_verdict() -> None:
    report = report_for(measured("prefork"), PoolReport("eventlet", "skipped", install="pip y"))
    data = orjson.loads(report_json(report))
    assert data["ok"] is True
    prefork = data["pools"][0]
    assert prefork["facts"]["child_pids"] == [1001, 1002, 1003, 1004]
    assert prefork["facts"]["concurrency_mode"] == "parallel"
    assert all(c["ok"] for c in prefork["checks"])
    assert data["pools"][1]["install"] == "pip y"
