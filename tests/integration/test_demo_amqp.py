"""``celeriac demo --broker amqp://…`` on a real RabbitMQ: the seed's drawing with each
process's own AMQP connections, seen from the processes' TCP sockets to the node."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.integration.test_demo import demo_env, pool_report, run_demo_json, seed_call

pytest_plugins = ["tests.support.rabbitmq_fixtures"]


def _local_ports(proc: dict[str, Any]) -> set[int]:
    """The local ports of a process's AMQP sockets, from lines like
    ``127.0.0.1:41234 → 127.0.0.1:5672 (amqp)``."""
    ports = set()
    for line in proc["connections"]:
        match = re.match(r"\S+:(\d+) → \S+ \(amqp\)$", line)
        assert match, f"not an unshared AMQP socket: {line!r}"
        ports.add(int(match.group(1)))
    return ports


def test_demo_prefork_on_rabbitmq_gives_each_child_its_own_connections(
    tmp_path: Path, amqp_url: str
) -> None:
    code, data = run_demo_json(tmp_path, "--pool", "prefork", "-c", "2", "--broker", amqp_url)
    assert code == 0, data
    assert data["broker"].startswith("amqp://guest:***@127.0.0.1:")
    report = pool_report(data, "prefork")
    facts = report["facts"]
    manager = facts["manager_pid"]
    children = facts["child_pids"]
    assert len(children) == 2 and facts["process_count"] == 3
    assert set(facts["task_pids"]) == set(children)
    assert facts["connection_source"] == "TCP sockets to RabbitMQ"
    assert set(facts["own_connection_pids"]) == {manager, *children}
    assert facts["shared_socket_pids"] == []
    assert facts["connection_model"] == "own per process (manager + 2 children)"
    ports = {proc["pid"]: _local_ports(proc) for proc in facts["processes"]}
    for proc in facts["processes"]:
        assert ports[proc["pid"]], f"pid {proc['pid']} holds no AMQP connection"
        if proc["role"] == "child":
            assert proc["ppid"] == manager
    every = [port for held in ports.values() for port in held]
    assert len(every) == len(set(every)), "a connection is held by two processes"
    connections = next(c for c in report["checks"] if c["name"] == "connections")
    assert connections["ok"] is True
    add = seed_call(facts, "add(3, 5)")
    assert (add["state"], add["result"]) == ("SUCCESS", 8) and add["pid"] in children


def test_demo_on_rabbitmq_draws_the_tree_with_amqp_connections(
    tmp_path: Path, amqp_url: str
) -> None:
    args = ("demo", "--pool", "prefork", "-c", "2", "--broker", amqp_url)
    done = subprocess.run(
        [sys.executable, "-m", "celeriac", *args],
        cwd=tmp_path,
        env={**demo_env(), "COLUMNS": "160"},
        capture_output=True,
        timeout=90,
        check=False,
    )
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    assert "broker amqp://guest:***@127.0.0.1:" in out
    assert "guest:guest" not in out
    assert re.search(r"进程 PID \d+ \(主进程 - Manager\)", out)
    children = re.findall(r"子进程 PID \d+ \(Worker-[12]\)", out)
    assert len(children) == 2, out
    drawn = re.findall(r"connections: \d+ AMQP connections? → 127\.0\.0\.1:\d+ \(local", out)
    assert len(drawn) == 3, out  # the manager and each child
    assert "✓ connections: seed each child its own, the manager its own" in out
    assert "own per process (manager + 2 children) [TCP sockets to RabbitMQ]" in out
    assert "Every measurement agrees with the seed's table." in out
