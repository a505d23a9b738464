"""``inspect tree``: the worker measures its own process tree and answers with it.

The manager (or the one process of an in-process pool) lists itself and its children with
psutil, its own OS threads, each process's connections to the broker and the result
backend as Redis's ``CLIENT LIST`` shows them (matched to processes by socket, with the
names each connection gave itself), and the tasks running now in each slot with how long
they have run. Nothing is drawn from the configuration: a child that died is not listed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ..urls import safe_url

if TYPE_CHECKING:
    from .control import ControlListener

logger = logging.getLogger(__name__)


def measure(listener: ControlListener) -> dict[str, Any]:
    from ..demo.observe import connections, process_tree, redis_connections

    runtime = listener.runtime
    app = runtime.app
    processes = process_tree(os.getpid())
    children = {child.pid: child.index for child in listener.children()}
    found, source = connections(app.broker_url, processes)
    conns = [asdict(c) for c in found or []]
    backend_url = app.backend_url or ""
    if backend_url.split("://", 1)[0] in ("redis", "rediss") and not _same_server(
        backend_url, app.broker_url
    ):
        try:
            extra = redis_connections(backend_url, [p.pid for p in processes])
            conns += [{**asdict(c), "kind": "backend"} for c in extra]
        except Exception as exc:  # the backend may be down: the tree still shows the rest
            logger.warning("inspect tree: could not list the backend's clients: %s", exc)
    by_pid: dict[int, list[dict[str, Any]]] = {}
    for conn in conns:
        by_pid.setdefault(int(conn["pid"]), []).append(
            {"name": conn["name"], "kind": conn["kind"], "own": conn["own"]}
        )
    me = os.getpid()
    return {
        "hostname": runtime.nodename,
        "pool": runtime.pool_name,
        "concurrency": runtime.concurrency,
        "pid": me,
        "broker": safe_url(app.broker_url),
        "backend": safe_url(backend_url) if backend_url else None,
        "connection_source": source,
        "queues": listener.queues(),
        "processes": [
            {
                "pid": p.pid,
                "ppid": p.ppid,
                "name": p.name,
                "role": "manager" if p.pid == me else "child",
                "child_index": children.get(p.pid),
                "num_threads": p.num_threads,
                "threads": _threads() if p.pid == me else [],
                "connections": sorted(by_pid.get(p.pid, []), key=lambda c: str(c["name"])),
            }
            for p in processes
        ],
        "running": _running(listener),
        "measured_at": time.time(),
    }


def _same_server(a: str, b: str) -> bool:
    return a.split("://", 1)[-1].split("/", 1)[0] == b.split("://", 1)[-1].split("/", 1)[0]


def _threads() -> list[dict[str, Any]]:
    """This process's OS threads (under gevent/eventlet, the greenlets that pose as threads
    are left out: they are shown as the tasks they run)."""
    found = []
    for thread in threading.enumerate():
        native = getattr(thread, "native_id", None)
        if native is None:
            continue
        found.append({"ident": thread.ident, "native_id": native, "name": thread.name})
    natives = {t["native_id"] for t in found}
    main = threading.main_thread()
    if len(natives) < len(found):  # green threads share one native id: keep the real one
        found = [t for t in found if t["native_id"] != main.native_id or t["ident"] == main.ident]
    if not found:  # eventlet's threading knows no native ids: the one real thread
        found = [{"ident": main.ident, "native_id": os.getpid(), "name": main.name}]
    return sorted(found, key=lambda t: (t["name"] != "MainThread", t["name"]))


def _running(listener: ControlListener) -> list[dict[str, Any]]:
    book = listener.book
    if book is None:
        return []
    now = time.time()
    found = []
    for record in book.records(listener.pool_running()):
        for info in record.get("active") or []:
            place = info.get("place") or {}
            start = info.get("time_start") or now
            found.append(
                {
                    "id": info["id"],
                    "name": info["name"],
                    "pid": info.get("worker_pid"),
                    "child_index": place.get("child_index"),
                    "thread_id": place.get("thread_id"),
                    "thread_name": place.get("thread_name"),
                    "greenlet": place.get("greenlet"),
                    "asyncio_task": place.get("asyncio_task"),
                    "runtime_s": round(max(0.0, now - float(start)), 3),
                }
            )
    return found
