"""The events format, the clock, the monitor's summary and the dump lines, without a broker."""

from __future__ import annotations

import base64

import orjson
import pytest

from celeriac.cli.events_cmd import dump_line
from celeriac.events import LamportClock, wire
from celeriac.events.monitor import ClusterMonitor


def test_envelope_is_kombus_and_decodes_back() -> None:
    events = [{"type": "task-started", "uuid": "a"}, {"type": "task-succeeded", "uuid": "a"}]
    raw = wire.encode(events, "w@h", "task.multi")
    envelope = orjson.loads(raw)
    assert envelope["headers"] == {"hostname": "w@h"}
    assert envelope["properties"]["delivery_info"] == {
        "exchange": "celeryev",
        "routing_key": "task.multi",
    }
    assert envelope["properties"]["delivery_mode"] == 1
    assert orjson.loads(base64.b64decode(envelope["body"])) == events
    assert wire.decode(raw) == events
    assert wire.routing_key("worker-heartbeat") == "worker.heartbeat"
    assert wire.channel(3, "task.multi") == "/3.celeryev/task.multi"


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[]", b'{"body": "e30=", "properties": {"body_encoding": "base64"}}'],
)
def test_decode_says_what_is_wrong(raw: bytes) -> None:
    with pytest.raises(ValueError, match="event envelope"):
        wire.decode(raw)


def test_lamport_clock() -> None:
    clock = LamportClock()
    assert clock.forward() == 1
    assert clock.forward_many(3) == 2 and clock.value == 4
    assert clock.adjust(10) == 11
    assert clock.adjust(2) == 12


def test_monitor_keeps_the_final_state_and_counts() -> None:
    monitor = ClusterMonitor()
    now = 1000.0
    monitor.feed(
        {
            "type": "worker-online",
            "hostname": "w@h",
            "pool": "prefork",
            "freq": 2.0,
            "local_received": now,
            "sw_ident": "py-celeriac",
            "sw_ver": "1",
        }
    )
    monitor.feed(
        {"type": "task-received", "uuid": "t1", "name": "add", "hostname": "w@h", "timestamp": now}
    )
    monitor.feed(
        {
            "type": "task-succeeded",
            "uuid": "t1",
            "result": "3",
            "hostname": "w@h",
            "local_received": now,
        }
    )
    monitor.feed(
        {"type": "task-started", "uuid": "t1", "hostname": "w@h", "timestamp": now}
    )  # late
    monitor.feed({"type": "task-failed", "uuid": "t2", "exception": "E()", "local_received": now})
    assert monitor.tasks["t1"].state == "SUCCESS" and monitor.tasks["t1"].name == "add"
    assert monitor.states()["SUCCESS"] == 1 and monitor.states()["FAILURE"] == 1
    assert monitor.throughput(now + 1) == pytest.approx(0.2)
    assert monitor.throughput(now + 60) == 0
    worker = monitor.workers["w@h"]
    assert worker.pool == "prefork" and worker.alive(now + 3)
    assert not worker.alive(now + 5)
    monitor.feed({"type": "worker-offline", "hostname": "w@h", "local_received": now + 4})
    assert not worker.alive(now + 4)


def test_dump_lines_name_the_task() -> None:
    names: dict[str, str] = {}
    line = dump_line(
        {
            "type": "task-received",
            "uuid": "t1",
            "name": "add",
            "args": "(1, 2)",
            "kwargs": "{}",
            "hostname": "w@h",
            "timestamp": 0.0,
            "clock": 3,
        },
        names,
    )
    assert line == (
        "w@h [1970-01-01 00:00:00.000000] task received: add[t1] args=(1, 2) kwargs={} clock=3"
    )
    later = dump_line(
        {
            "type": "task-succeeded",
            "uuid": "t1",
            "result": "3",
            "hostname": "w@h",
            "timestamp": 1.0,
        },
        names,
    )
    assert later == "w@h [1970-01-01 00:00:01.000000] task succeeded: add[t1] result=3"
    beat = dump_line({"type": "worker-heartbeat", "hostname": "w@h", "timestamp": 0.0}, names)
    assert beat == "w@h [1970-01-01 00:00:00.000000] heartbeat:"


def test_live_view_shows_workers_states_and_throughput() -> None:
    from rich.console import Console

    from celeriac.cli.events_cmd import render

    monitor = ClusterMonitor()
    now = 2000.0
    monitor.feed(
        {
            "type": "worker-heartbeat",
            "hostname": "a@h",
            "pool": "prefork",
            "pid": 42,
            "active": 1,
            "processed": 7,
            "loadavg": [0.5, 0.25, 0.0],
            "local_received": now,
        }
    )
    for index in range(3):
        monitor.feed({"type": "task-succeeded", "uuid": f"t{index}", "local_received": now})
    monitor.feed({"type": "task-started", "uuid": "t9", "local_received": now})
    console = Console(record=True, width=120, color_system=None)
    console.print(render(monitor, now + 1))
    text = console.export_text()
    assert "a@h" in text and "online" in text and "prefork" in text and "42" in text
    assert "0.50 0.25 0.00" in text
    assert "SUCCESS" in text and "STARTED" in text
    assert "throughput: 0.3 tasks/s" in text
    console = Console(record=True, width=120, color_system=None)
    console.print(render(monitor, now + 10))
    assert "offline" in console.export_text()  # missed its beats


def test_events_command_options_say_what_is_wrong() -> None:
    from click.testing import CliRunner

    from celeriac.cli import main as cli_main

    cli_main._register_commands()
    runner = CliRunner()
    camera = runner.invoke(cli_main.cli, ["-b", "memory://x", "events", "-c", "myapp.Camera"])
    assert camera.exit_code == 2
    assert "celeriac has no snapshot cameras" in camera.output
    freq = runner.invoke(cli_main.cli, ["-b", "memory://x", "events", "-F", "0"])
    assert freq.exit_code == 2 and "must be a number of seconds > 0" in freq.output
    memory = runner.invoke(cli_main.cli, ["-b", "memory://x", "events", "--dump"])
    assert memory.exit_code == 1
    assert "carries no events; use a Redis or SQLite broker_url" in memory.output
