"""A worker's tree measured by the dashboard itself, for brokers without remote control
(SQLite): the worker's pid comes from its heartbeats, its processes from psutil (only for
a worker on this machine), and the tasks running in each child from their events."""

from __future__ import annotations

import socket
import time
from typing import Any

from ..demo.observe import process_tree


def measure_local(
    row: dict[str, Any], started: list[dict[str, Any]], now: float | None = None
) -> dict[str, Any] | None:
    """An ``inspect tree``-shaped reply for the worker of heartbeat *row*, or None when it
    is not on this machine or has gone."""
    now = time.time() if now is None else now
    hostname, pid = str(row.get("hostname") or ""), row.get("pid")
    if not isinstance(pid, int) or hostname.rpartition("@")[2] != socket.gethostname():
        return None
    processes = process_tree(pid)
    if not processes:
        return None
    children = [p for p in processes if p.pid != pid]
    index_of = {}
    for record in started:
        place = record.get("place") or {}
        if record.get("worker") == hostname and place.get("child_index") is not None:
            index_of[place.get("pid")] = place["child_index"]
    prefork = row.get("pool") == "prefork"
    running = [
        {
            "id": record["uuid"],
            "name": record.get("name") or "?",
            "pid": (record.get("place") or {}).get("pid"),
            "child_index": (record.get("place") or {}).get("child_index"),
            "thread_id": None,
            "runtime_s": max(0.0, now - float(record.get("started_at") or now)),
        }
        for record in started
        if record.get("worker") == hostname
    ]
    return {
        "hostname": hostname,
        "pool": row.get("pool"),
        "concurrency": len(children) if prefork else None,
        "pid": pid,
        "queues": [],
        "measured_by": "dashboard",
        "processes": [
            {
                "pid": p.pid,
                "ppid": p.ppid,
                "name": p.name,
                "role": "manager" if p.pid == pid else "child",
                "child_index": index_of.get(p.pid),
                "num_threads": p.num_threads,
                "threads": [],
                "connections": [],
            }
            for p in processes
        ],
        "running": running,
        "measured_at": now,
    }
