"""``celeriac demo --broker amqp://…`` on a real RabbitMQ: the seed's drawing with each
process's own AMQP connections, seen from the processes' TCP sockets to the node and named
as RabbitMQ itself lists them (``rabbitmqctl list_connections``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from tests.integration.test_demo import demo_env, pool_report, seed_call
from tests.support.rabbitmq import RabbitNode

pytest_plugins = ["tests.support.rabbitmq_fixtures"]

# what rabbitmqctl needs to reach the test's private node: its cookie (in HOME), name and epmd
NODE_KEYS = ("HOME", "RABBITMQ_NODENAME", "ERL_EPMD_PORT")
# "127.0.0.1:41234 → 127.0.0.1:5672 = celeriac.child0.4242 consumer [1 channel] (amqp)"
AMQP_LINE = re.compile(r"\S+:(\d+) → \S+ = (\S+) (\w+) \[(\d+) channels?\] \(amqp\)$")


def run_demo(tmp_path: Path, node: RabbitNode, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**demo_env(), **{key: node.env[key] for key in NODE_KEYS}, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "celeriac", "demo", "--pool", "prefork", "-c", "2", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=90,
        check=False,
    )


def amqp_lines(proc: dict[str, Any]) -> list[tuple[int, str, str, int]]:
    """(local port, connection name, role, channels) of each of a process's connections."""
    found = []
    for line in proc["connections"]:
        match = AMQP_LINE.match(line)
        assert match, f"not an unshared AMQP connection named by RabbitMQ: {line!r}"
        port, name, role, channels = match.groups()
        found.append((int(port), name, role, int(channels)))
    return found


def test_demo_prefork_on_rabbitmq_gives_each_child_its_own_connections(
    tmp_path: Path, amqp_url: str, rabbit_node: RabbitNode
) -> None:
    done = run_demo(tmp_path, rabbit_node, "--broker", amqp_url, "--json")
    data = orjson.loads(done.stdout)
    assert done.returncode == 0, data
    assert data["broker"].startswith("amqp://guest:***@127.0.0.1:")
    report = pool_report(data, "prefork")
    facts = report["facts"]
    manager = facts["manager_pid"]
    children = facts["child_pids"]
    assert len(children) == 2 and facts["process_count"] == 3
    assert set(facts["task_pids"]) == set(children)
    assert facts["connection_source"] == "TCP sockets to RabbitMQ + rabbitmqctl"
    assert set(facts["own_connection_pids"]) == {manager, *children}
    assert facts["shared_socket_pids"] == []
    assert facts["connection_model"] == "own per process (manager + 2 children)"
    ports: list[int] = []
    for proc in facts["processes"]:
        lines = amqp_lines(proc)
        ports += [port for port, *_ in lines]
        # RabbitMQ's names carry the pid of the process that opened the connection
        assert {name.rsplit(".", 1)[-1].split(":")[0] for _, name, _, _ in lines} == {
            str(proc["pid"])
        }
        assert all(channels == 1 for *_, channels in lines)
        roles = {role for _, _, role, _ in lines}
        if proc["role"] == "child":
            assert proc["ppid"] == manager
            assert any(
                n.startswith(f"celeriac.child{proc['child_index']}.") for _, n, _, _ in lines
            )
            assert "consumer" in roles  # its own basic.consume on its own channel
        else:
            assert {name for _, name, _, _ in lines} == {f"celeriac.worker.{manager}"}
    assert len(ports) == len(set(ports)), "a connection is held by two processes"
    connections = next(c for c in report["checks"] if c["name"] == "connections")
    assert connections["ok"] is True
    add = seed_call(facts, "add(3, 5)")
    assert (add["state"], add["result"]) == ("SUCCESS", 8) and add["pid"] in children


def test_demo_on_rabbitmq_draws_the_tree_with_amqp_connections(
    tmp_path: Path, amqp_url: str, rabbit_node: RabbitNode
) -> None:
    done = run_demo(tmp_path, rabbit_node, "--broker", amqp_url)
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    assert "broker amqp://guest:***@127.0.0.1:" in out
    assert "guest:guest" not in out
    manager = re.search(r"进程 PID (\d+) \(主进程 - Manager\)", out)
    assert manager, out
    children = re.findall(r"子进程 PID (\d+) \(Worker-[12]\)", out)
    assert len(children) == 2, out
    drawn = re.findall(r"connections: \d+ AMQP connections? → 127\.0\.0\.1:\d+: ", out)
    assert len(drawn) == 3, out  # the manager and each child
    assert f"celeriac.worker.{manager.group(1)} control [1 channel]" in out
    for pid in children:
        assert re.search(rf"celeriac\.child[01]\.{pid} consumer \[1 channel\]", out), out
    flat = " ".join(out.split())  # rich wraps long lines
    assert "✓ connections: seed each child its own, the manager its own" in flat
    assert "[TCP sockets to RabbitMQ + rabbitmqctl]" in flat
    assert "Every measurement agrees with the seed's table." in out


def test_demo_on_rabbitmq_without_rabbitmqctl_access_still_sees_the_sockets(
    tmp_path: Path, amqp_url: str
) -> None:
    """A user whose rabbitmqctl cannot reach the node (another cookie) still gets the
    socket view: every connection owned, none shared, only without RabbitMQ's names."""
    cookie_less = tmp_path / "home"
    cookie_less.mkdir()
    env = {**demo_env(), "HOME": str(cookie_less), "RABBITMQ_NODENAME": "nobody@localhost"}
    args = ("demo", "--pool", "prefork", "-c", "2", "--json", "--broker", amqp_url)
    done = subprocess.run(
        [sys.executable, "-m", "celeriac", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=90,
        check=False,
    )
    data = orjson.loads(done.stdout)
    assert done.returncode == 0, data
    facts = pool_report(data, "prefork")["facts"]
    assert facts["connection_source"] == "TCP sockets to RabbitMQ"
    assert set(facts["own_connection_pids"]) == {facts["manager_pid"], *facts["child_pids"]}
    for proc in facts["processes"]:
        assert proc["connections"]
        assert all(re.match(r"\S+:\d+ → \S+ \(amqp\)$", line) for line in proc["connections"])
