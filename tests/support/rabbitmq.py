"""Start a private RabbitMQ node on free loopback ports, and stop it (by PID) afterwards.

The node has its own name, data, log and config directories, Erlang cookie (``HOME``) and
epmd port, so it never meets the Debian package's own node or another test run's.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from urllib.parse import quote

from tests.support.redis_server import free_port

RABBIT_BIN = "/usr/lib/rabbitmq/bin"
START_TIMEOUT_S = 60.0


def rabbitmq_available() -> bool:
    return os.path.exists(os.path.join(RABBIT_BIN, "rabbitmq-server")) or bool(
        shutil.which("rabbitmq-server")
    )


def _tool(name: str) -> str:
    path = os.path.join(RABBIT_BIN, name)
    if os.path.exists(path):
        return path
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(
            f"{name} is not installed: apt-get install rabbitmq-server (scripts/test.sh does)"
        )
    return found


@dataclass
class RabbitNode:
    port: int
    epmd_port: int
    workdir: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def ctl(self, *args: str, timeout_s: float = 30.0) -> str:
        """Run rabbitmqctl against this node; returns its output."""
        done = subprocess.run(
            [_tool("rabbitmqctl"), "-q", *args],
            env=self.env,
            capture_output=True,
            timeout=timeout_s,
            check=True,
        )
        return done.stdout.decode()

    def reset(self, queues: tuple[str, ...] = ("celery",)) -> None:
        """Delete *queues* (and their dead-letter queues): a test starts from nothing."""
        import amqp

        conn = amqp.Connection(f"127.0.0.1:{self.port}", userid="guest", password="guest")
        conn.connect()
        try:
            channel = conn.channel()
            for name in queues:
                channel.queue_delete(name)
                channel.queue_delete(f"celeriac.dead.{name}")
        finally:
            conn.close()

    def restart(self) -> None:
        """Stop the node and start it again with the same name, ports and data: durable
        queues and persistent messages come back."""
        self.halt()
        self.process = _spawn(self.env, self.workdir)
        _wait_ready(self)

    def stop(self) -> None:
        self.halt()
        _stop_epmd(self.epmd_port, self.env)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def halt(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def _stop_epmd(port: int, env: dict[str, str]) -> None:
    epmd = shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"
    if os.path.exists(epmd):
        subprocess.run(
            [epmd, "-port", str(port), "-kill"], env=env, capture_output=True, timeout=10
        )


def start_rabbitmq() -> RabbitNode:
    workdir = tempfile.mkdtemp(prefix="celeriac-rabbit-")
    port, dist_port, epmd_port = free_port(), free_port(), free_port()
    config = os.path.join(workdir, "rabbitmq.conf")
    with open(config, "w") as f:
        f.write(
            f"listeners.tcp.default = 127.0.0.1:{port}\n"
            "loopback_users = none\n"
            "disk_free_limit.absolute = 1MB\n"
            "log.console = false\n"
            "log.file.level = warning\n"
        )
    plugins = os.path.join(workdir, "enabled_plugins")
    with open(plugins, "w") as f:
        f.write("[].\n")
    env = {
        **os.environ,
        "HOME": workdir,
        "RABBITMQ_NODENAME": f"celeriac-test-{secrets.token_hex(4)}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_MNESIA_BASE": os.path.join(workdir, "mnesia"),
        "RABBITMQ_LOG_BASE": os.path.join(workdir, "log"),
        "RABBITMQ_CONFIG_FILE": config,
        "RABBITMQ_ENABLED_PLUGINS_FILE": plugins,
        "RABBITMQ_PID_FILE": os.path.join(workdir, "rabbit.pid"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "ERL_EPMD_PORT": str(epmd_port),
    }
    node = RabbitNode(port, epmd_port, workdir, env, _spawn(env, workdir))
    try:
        _wait_ready(node)
    except BaseException:
        node.stop()
        raise
    return node


def _spawn(env: dict[str, str], workdir: str) -> subprocess.Popen[bytes]:
    with open(os.path.join(workdir, "server.out"), "ab") as log:
        return subprocess.Popen(
            [_tool("rabbitmq-server")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _wait_ready(node: RabbitNode) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            with open(os.path.join(node.workdir, "server.out"), "rb") as f:
                tail = f.read()[-2000:].decode(errors="replace")
            raise RuntimeError(f"rabbitmq-server exited at start-up: {tail}")
        if _amqp_answers(node.port):
            return
        time.sleep(0.2)  # polling a starting server, not synchronising test steps
    raise RuntimeError(f"rabbitmq-server did not accept AMQP on port {node.port} in time")


def _amqp_answers(port: int) -> bool:
    """True once the node speaks AMQP (the listener opens only when the broker is booted)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            return len(sock.recv(8)) > 0
    except OSError:
        return False


def vhost_url(node: RabbitNode, vhost: str = "/") -> str:
    return f"amqp://guest:guest@127.0.0.1:{node.port}/{quote(vhost, safe='')}"
