"""Look at a running worker from outside: its processes and the connections each one holds.

The worker's own records say where tasks ran; these observations say what exists, so the
two can contradict each other. Redis connections are matched to processes by socket (the
client address ``CLIENT LIST`` reports is a local address some process of the tree holds),
not by trusting the ``CLIENT SETNAME`` names, which are shown next to them. RabbitMQ
connections are the processes' TCP sockets to the node's port; where ``rabbitmqctl`` may
ask the node (its Erlang cookie is readable), RabbitMQ's own list adds each connection's
client-given name and channel count, matched by the client's address.
"""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson
import psutil

from .model import ConnInfo, ProcInfo

logger = logging.getLogger(__name__)

_NAME_PID = re.compile(r"\.(\d+)(?::[\w.-]+)?$")


def process_tree(manager_pid: int) -> list[ProcInfo]:
    """The manager and every process under it, as they are now."""
    try:
        manager = psutil.Process(manager_pid)
        procs = [manager, *manager.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    infos: list[ProcInfo] = []
    for proc in procs:
        try:
            with proc.oneshot():
                infos.append(ProcInfo(proc.pid, proc.ppid(), proc.name(), proc.num_threads()))
        except psutil.NoSuchProcess:  # it ended between listing and reading
            continue
    return infos


def _local_sockets(pids: Iterable[int]) -> dict[tuple[str, int], list[int]]:
    """Local TCP address -> the pids holding a socket bound to it."""
    owners: dict[tuple[str, int], list[int]] = {}
    for pid, conn in _tcp_connections(pids):
        if conn.laddr:
            owners.setdefault((conn.laddr.ip, conn.laddr.port), []).append(pid)
    return owners


def _tcp_connections(pids: Iterable[int]) -> Iterator[tuple[int, Any]]:
    """Each TCP socket of *pids* (gone or forbidden processes skipped), with its pid."""
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for conn in conns:
            yield pid, conn


def _split_addr(addr: str) -> tuple[str, int] | None:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def redis_connections(url: str, pids: Iterable[int]) -> list[ConnInfo]:
    """Connections to the Redis at *url* held by *pids*, named as ``CLIENT LIST`` names them."""
    import redis

    pid_set = set(pids)
    sockets = _local_sockets(pid_set)
    client = redis.Redis.from_url(url, client_name="celeriac.demo.observer")
    try:
        clients = client.client_list()
    finally:
        client.close()
    found: list[ConnInfo] = []
    for entry in clients:
        name = str(entry.get("name") or "")
        address = _split_addr(str(entry.get("addr") or ""))
        holders = sockets.get(address, []) if address else []
        if not holders:
            # not a TCP client of ours (unix socket, or another program): trust the name's pid
            match = _NAME_PID.search(name)
            holders = [int(match.group(1))] if match and int(match.group(1)) in pid_set else []
        kind = "backend" if name.endswith(":results") else "broker"
        for pid in holders:
            shared = tuple(other for other in holders if other != pid)
            found.append(
                ConnInfo(pid, kind, name or "(unnamed)", own=not shared, shared_with=shared)
            )
    return found


def _broker_addresses(host: str, port: int) -> set[tuple[str, int]]:
    """The (ip, port) pairs a socket to *host*:*port* can show as its remote end."""
    found = {(host, port)}
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError:
        return found
    for info in infos:
        found.add((str(info[4][0]), port))
    return found


RABBITMQCTL_TIMEOUT_S = 15.0
# Debian's /usr/sbin/rabbitmqctl runs as the rabbitmq user (the system node's cookie): the
# tool itself, which runs as the caller, comes first
RABBITMQCTL_DIRS = ("/usr/lib/rabbitmq/bin",)
# (client ip, client port, node port) -> (connection name, channels), as RabbitMQ lists them
RabbitView = dict[tuple[str, int, int], tuple[str, int]]


def _rabbitmqctl() -> str | None:
    for folder in RABBITMQCTL_DIRS:
        path = os.path.join(folder, "rabbitmqctl")
        if os.access(path, os.X_OK):
            return path
    return shutil.which("rabbitmqctl")


def rabbit_view() -> RabbitView | None:
    """RabbitMQ's own list of connections, with the names clients gave them, when this user
    may ask the node (``rabbitmqctl`` installed, the node's Erlang cookie readable, the node
    named by ``RABBITMQ_NODENAME`` or the default); None when it may not."""
    tool = _rabbitmqctl()
    cookie = os.path.join(os.path.expanduser("~"), ".erlang.cookie")
    if tool is None or not os.access(cookie, os.R_OK):
        return None  # without the cookie the node refuses, after seconds of trying
    columns = ("peer_host", "peer_port", "port", "client_properties", "channels")
    try:
        done = subprocess.run(
            [tool, "-q", "list_connections", "--formatter", "json", *columns],
            capture_output=True,
            timeout=RABBITMQCTL_TIMEOUT_S,
            check=True,
        )
        rows = orjson.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, orjson.JSONDecodeError) as exc:
        logger.debug("rabbitmqctl list_connections: %s", exc)
        return None
    view: RabbitView = {}
    for row in rows if isinstance(rows, list) else []:
        try:
            key = (_erlang_ip(row["peer_host"]), int(row["peer_port"]), int(row["port"]))
            props = {item[0]: item[-1] for item in row.get("client_properties") or []}
            view[key] = (str(props.get("connection_name") or "(unnamed)"), int(row["channels"]))
        except (KeyError, TypeError, ValueError, IndexError):
            continue
    return view


def _erlang_ip(value: object) -> str:
    """An address as rabbitmqctl's JSON gives it (Erlang's tuple: ``[127, 0, 0, 1]``, or
    eight 16-bit groups for IPv6) in the text psutil gives."""
    if isinstance(value, list) and len(value) in (4, 8):
        parts = [int(part) for part in value]
        if len(parts) == 4:
            return ".".join(str(part) for part in parts)
        return str(ipaddress.IPv6Address(b"".join(part.to_bytes(2, "big") for part in parts)))
    return str(value)


def amqp_connections(
    url: str, pids: Iterable[int], view: RabbitView | None = None
) -> list[ConnInfo]:
    """Connections to the RabbitMQ at *url* held by *pids*, seen from the processes' own TCP
    sockets: one AMQP connection is one socket to the node's port, and a socket whose local
    address two processes hold is one connection shared across a fork. With RabbitMQ's own
    *view*, each is named as its client named it, with its channel count."""
    from ..brokers.amqp_wire import parse_url

    target = parse_url(url)
    remote = _broker_addresses(target.host, target.port)
    holders: dict[tuple[str, int, int], list[int]] = {}
    for pid, conn in _tcp_connections(pids):
        if conn.laddr and conn.raddr and (conn.raddr.ip, conn.raddr.port) in remote:
            key = (conn.laddr.ip, conn.laddr.port, conn.raddr.port)
            holders.setdefault(key, []).append(pid)
    found: list[ConnInfo] = []
    for key, owners in sorted(holders.items(), key=lambda item: item[0][1]):
        ip, port, _ = key
        name = f"{ip}:{port} → {target.host}:{target.port}"
        known = (view or {}).get(key)
        if known is not None:
            name += f" = {known[0]} [{_count(known[1], 'channel')}]"
        for pid in owners:
            shared = tuple(other for other in owners if other != pid)
            found.append(ConnInfo(pid, "amqp", name, own=not shared, shared_with=shared))
    return found


def _count(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _db_fds(pid: int, target: str) -> dict[int, str]:
    """fd -> file name, for the database and its -wal/-shm/-journal files."""
    try:
        files = psutil.Process(pid).open_files()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return {}
    return {
        f.fd: os.path.basename(f.path)
        for f in files
        if f.path == target or f.path.startswith(target + "-")
    }


def sqlite_connections(path: str, processes: Sequence[ProcInfo]) -> list[ConnInfo]:
    """Who holds the SQLite database open, telling a process's own handles from inherited ones.

    A descriptor is inherited only when it is the very same open file as one of the
    parent's (kcmp(2) compares the kernel's file objects; equal numbers prove nothing, since
    a child that closed nothing reopens on the same low numbers). Where the kernel will not
    say, a descriptor counts as the process's own.
    """
    target = os.path.realpath(path)
    fds = {proc.pid: _db_fds(proc.pid, target) for proc in processes}
    found: list[ConnInfo] = []
    for proc in processes:
        mine = fds[proc.pid]
        parent = fds.get(proc.ppid, {})
        own = {
            fd: name
            for fd, name in mine.items()
            if not any(_same_open_file(proc.pid, fd, proc.ppid, pfd) for pfd in parent)
        }
        inherited = {fd: name for fd, name in mine.items() if fd not in own}
        if own:
            found.append(ConnInfo(proc.pid, "broker+backend", _fd_text(own)))
        if inherited:
            text = f"{_fd_text(inherited)} from pid {proc.ppid}"
            found.append(ConnInfo(proc.pid, "inherited", text, own=False))
    return found


_KCMP_SYSCALL = {"x86_64": 312, "aarch64": 272}.get(platform.machine())
_KCMP_FILE = 0


def _same_open_file(pid1: int, fd1: int, pid2: int, fd2: int) -> bool:
    """True when both descriptors point at one kernel file object (kcmp(2)); False when
    they do not, or when the kernel will not tell."""
    if _KCMP_SYSCALL is None or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        answer = libc.syscall(_KCMP_SYSCALL, pid1, pid2, _KCMP_FILE, fd1, fd2)
    except (OSError, AttributeError):
        return False
    return bool(answer == 0)


def _fd_text(fds: dict[int, str]) -> str:
    names = sorted(set(fds.values()), key=len)
    return f"{names[0] if names else '?'} fds {','.join(str(fd) for fd in sorted(fds))}"


def connections(
    broker_url: str, processes: Sequence[ProcInfo]
) -> tuple[list[ConnInfo] | None, str]:
    """The connections of *processes* to the broker, and how they were seen."""
    pids = [proc.pid for proc in processes]
    scheme = broker_url.split("://", 1)[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        import redis.exceptions

        try:
            return redis_connections(broker_url, pids), "redis CLIENT LIST + sockets"
        except redis.exceptions.RedisError as exc:
            logger.warning("could not list Redis clients: %s", exc)
            return None, f"CLIENT LIST failed: {exc}"
    if scheme in ("amqp", "amqps", "pyamqp"):
        from ..errors import CeleriacError

        view = rabbit_view()
        source = "TCP sockets to RabbitMQ" + (" + rabbitmqctl" if view else "")
        try:
            return amqp_connections(broker_url, pids, view), source
        except CeleriacError as exc:
            return None, f"could not read the AMQP URL: {exc}"
    if scheme == "sqlite":
        path = broker_url.split("://", 1)[1]
        path = path[1:] if path.startswith("/") else path
        return sqlite_connections(path, processes), "open database files"
    return None, f"no view into {scheme}:// connections"
