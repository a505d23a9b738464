"""A real Redis Sentinel setup on loopback: a redis-server master, one replica
(``--replicaof``) and three redis-sentinel processes (quorum 2), each with its own config
file in a temp dir, all on free ports. Stopped by PID.

``down-after-milliseconds 1000`` and ``failover-timeout 3000`` keep a failover to a few
seconds: the master is subjectively down after 1 s, objectively down once a second sentinel
agrees, and the elected sentinel promotes the replica.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tests.support.redis_server import free_port, server_args, spawn, stop_process

MASTER_NAME = "mymaster"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
SENTINELS = 3
QUORUM = 2
READY_S = 30.0
DEBIAN_SENTINEL = "/usr/bin/redis-sentinel"


def sentinel_binary() -> str:
    found = shutil.which("redis-sentinel") or (
        DEBIAN_SENTINEL if Path(DEBIAN_SENTINEL).exists() else None
    )
    if found is None:
        raise RuntimeError(
            "redis-sentinel is not installed: apt-get install redis-sentinel (scripts/test.sh does)"
        )
    return found


@dataclass
class Node:
    """One process of the setup: a redis-server or a redis-sentinel."""

    role: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        stop_process(self.process)

    def kill(self) -> None:
        """SIGKILL: no shutdown, nothing saved, its clients see the connection drop."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@dataclass
class SentinelCluster:
    workdir: Path
    master: Node
    replica: Node
    sentinels: list[Node]
    extra: list[Node] = field(default_factory=list)

    def url(self, db: int = 0, password: str = "") -> str:
        """Celery's spelling: every sentinel, joined by ``;``."""
        auth = f":{password}@" if password else ""
        return ";".join(
            f"sentinel://{auth if i == 0 else ''}127.0.0.1:{node.port}/{db}"
            for i, node in enumerate(self.sentinels)
        )

    def sentinel_client(self, index: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.sentinels[index].port, socket_timeout=2.0)

    def master_address(self) -> tuple[str, int] | None:
        """Where the first sentinel that answers says the master is."""
        for node in self.sentinels:
            client = redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=1.0)
            try:
                found: Any = client.sentinel_get_master_addr_by_name(MASTER_NAME)
            except redis.exceptions.ConnectionError:
                continue
            finally:
                client.close()
            if found:
                return str(found[0]), int(found[1])
        return None

    def server(self, port: int) -> Node:
        return next(n for n in (self.master, self.replica) if n.port == port)

    def client(self, port: int | None = None, db: int = 0) -> redis.Redis:
        """A plain client to one server (the current master when *port* is None)."""
        if port is None:
            address = self.master_address()
            assert address is not None, "no sentinel knows the master"
            port = address[1]
        return redis.Redis(host="127.0.0.1", port=port, db=db, socket_timeout=5.0)

    def wait_until(self, check: Callable[[], bool], timeout_s: float, what: str) -> float:
        """Poll *check* until true; the seconds it took. Raises naming *what* on timeout."""
        started = time.monotonic()
        while not _quietly(check):
            if time.monotonic() - started > timeout_s:
                raise AssertionError(f"{what}: not within {timeout_s:g} s\n{self.logs()}")
            time.sleep(0.05)
        return time.monotonic() - started

    def wait_ready(self, timeout_s: float = READY_S) -> None:
        """Every sentinel sees the master, the replica in sync and the other sentinels (so
        a failover can be agreed on and elected)."""
        replica = self.client(self.replica.port)
        try:
            self.wait_until(
                lambda: replica.info("replication").get("master_link_status") == "up",
                timeout_s,
                "replica in sync with the master",
            )
        finally:
            replica.close()
        for index in range(len(self.sentinels)):
            client = self.sentinel_client(index)
            try:
                self.wait_until(
                    lambda c=client: _sentinel_sees_all(c, len(self.sentinels)),  # type: ignore[misc]
                    timeout_s,
                    f"sentinel {index} sees the replica and the other sentinels",
                )
            finally:
                client.close()

    def kill_master(self) -> Node:
        """SIGKILL the server the sentinels call master now; the killed node."""
        address = self.master_address()
        assert address is not None, "no sentinel knows the master"
        node = self.server(address[1])
        node.kill()
        return node

    def wait_failover(self, old_port: int, timeout_s: float) -> float:
        """Seconds until every sentinel names a master other than *old_port*."""

        def switched() -> bool:
            for index in range(len(self.sentinels)):
                client = self.sentinel_client(index)
                try:
                    found: Any = client.sentinel_get_master_addr_by_name(MASTER_NAME)
                finally:
                    client.close()
                if not found or int(found[1]) == old_port:
                    return False
            return True

        return self.wait_until(switched, timeout_s, "the sentinels switch to a new master")

    def revive_as_replica(self, node: Node, timeout_s: float = READY_S) -> None:
        """Start the killed *node* again on its port as a replica of the current master,
        and wait until it is in sync and every sentinel counts it (ready for the next
        failover)."""
        address = self.master_address()
        assert address is not None, "no sentinel knows the master"
        current = self.server(address[1])
        revived = _server(
            self.workdir, node.role, ["--replicaof", "127.0.0.1", str(address[1])], node.port
        )
        self.master, self.replica = current, revived
        self.wait_ready(timeout_s)

    def logs(self) -> str:
        parts = []
        for node in self.nodes():
            text = node.log.read_text(errors="replace") if node.log.exists() else ""
            parts.append(f"--- {node.role} :{node.port}\n{text[-3000:]}")
        return "\n".join(parts)

    def nodes(self) -> list[Node]:
        return [self.master, self.replica, *self.sentinels, *self.extra]

    def stop(self) -> None:
        for node in self.nodes():
            with contextlib.suppress(Exception):
                node.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _quietly(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except (redis.exceptions.RedisError, OSError):
        return False


def _sentinel_sees_all(client: redis.Redis, sentinels: int) -> bool:
    """The master is up, a replica is up and linked to it, the other sentinels are known."""
    state: Any = client.sentinel_master(MASTER_NAME)
    if state.get("is_sdown") or state.get("is_odown"):
        return False
    if int(state.get("num-other-sentinels", 0)) < sentinels - 1:
        return False
    replicas: Any = client.sentinel_slaves(MASTER_NAME)
    return any(
        not r.get("is_sdown")
        and not r.get("is_disconnected")
        and r.get("master-link-status") == "ok"
        for r in replicas
    )


def _server(workdir: Path, role: str, args: list[str], port: int = 0) -> Node:
    port = port or free_port()
    log = workdir / f"{role}-{port}.log"
    process = spawn(
        server_args(
            port, workdir, ["--dbfilename", f"{role}-{port}.rdb", "--logfile", str(log), *args]
        )
    )
    return _answering(Node(role, port, process, log))


def _sentinel(workdir: Path, master_port: int) -> Node:
    port = free_port()
    log = workdir / f"sentinel-{port}.log"
    config = workdir / f"sentinel-{port}.conf"  # sentinel rewrites it: writable, its own
    config.write_text(
        "\n".join(
            [
                f"port {port}",
                "bind 127.0.0.1",
                "daemonize no",
                f"logfile {log}",
                f"dir {workdir}",
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} {QUORUM}",
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
                f"sentinel parallel-syncs {MASTER_NAME} 1",
                "",
            ]
        )
    )
    process = spawn([sentinel_binary(), str(config)])
    return _answering(Node("sentinel", port, process, log))


def _answering(node: Node) -> Node:
    """*node* once it answers PING (its log tail in the error when it exits instead)."""
    client = redis.Redis(host="127.0.0.1", port=node.port, socket_connect_timeout=0.2)
    try:
        _wait_node(lambda: bool(client.ping()), node, "answers PING")
    finally:
        client.close()
    return node


def _wait_node(check: Callable[[], bool], node: Node, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not _quietly(check):
        if node.process.poll() is not None:
            log = node.log.read_text(errors="replace") if node.log.exists() else ""
            raise RuntimeError(
                f"{node.role} on port {node.port} exited with {node.process.returncode}"
                f":\n{log[-3000:]}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(f"{node.role} on port {node.port} never {what}")
        time.sleep(0.02)


def start_sentinel_cluster() -> SentinelCluster:
    """Master, replica and three sentinels, ready for a failover. Stop it with ``stop()``."""
    workdir = Path(tempfile.mkdtemp(prefix="celeriac-sentinel-"))
    started: list[Node] = []
    try:
        master = _server(workdir, "master", [])
        started.append(master)
        replica = _server(workdir, "replica", ["--replicaof", "127.0.0.1", str(master.port)])
        started.append(replica)
        sentinels = []
        for _ in range(SENTINELS):
            sentinels.append(_sentinel(workdir, master.port))
            started.append(sentinels[-1])
        cluster = SentinelCluster(workdir, master, replica, sentinels)
        cluster.wait_ready()
    except BaseException:
        for node in started:
            with contextlib.suppress(Exception):
                node.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return cluster


__all__ = [
    "MASTER_NAME",
    "Node",
    "SentinelCluster",
    "sentinel_binary",
    "start_sentinel_cluster",
]
