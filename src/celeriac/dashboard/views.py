"""Turn what the state holds into what the templates draw: the seed's process tree as
nested nodes, a task's workflow as a tree, and the filters every value goes through
(cut short, times, places, secrets masked)."""

from __future__ import annotations

import re
import time
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

from markupsafe import Markup

from ..demo.render import compact_connections

Node = dict[str, Any]

_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s'\"]*:)[^@\s'\"]+@", re.I)
_SECRET_ITEM = re.compile(
    r"""(['"]?[\w-]*(?:password|passwd|secret|token|api_?key)[\w-]*['"]?\s*[:=]\s*)"""
    r"""(['"])(?:(?!\2).)*\2""",
    re.I,
)


def mask(value: Any) -> Any:
    """Applied to every value a template prints: passwords in URLs and values under
    secret-looking names (``password=``, ``'api_key': …``) become ``***``."""
    if isinstance(value, Markup):  # a macro's output: its parts were masked already
        return value
    if isinstance(value, str) and value:
        value = _URL_PASSWORD.sub(r"\1***@", value)
        value = _SECRET_ITEM.sub(r"\1\2***\2", value)
    return value


def cut(value: Any, limit: int = 60) -> str:
    text = "" if value is None else str(value)
    if limit and len(text) > limit:
        return text[: max(1, limit - 1)] + "…"
    return text


def clock(value: Any) -> str:
    if not value:
        return ""
    return time.strftime("%H:%M:%S", time.localtime(float(value)))


def stamp(value: Any) -> str:
    if not value:
        return "unknown"
    return datetime.fromtimestamp(float(value), timezone.utc).isoformat(timespec="seconds")


def seconds(value: Any) -> str:
    return f"{float(value):.3f} s" if isinstance(value, (int, float)) else ""


def place(record: dict[str, Any]) -> str:
    where = record.get("place") or {}
    if not where:
        return ""
    parts = []
    if where.get("child_index") is not None:
        parts.append(f"child {int(where['child_index']) + 1}")
    if where.get("pid") is not None:
        parts.append(f"pid {where['pid']}")
    for key, word in (("thread_name", "thread"), ("greenlet", "greenlet")):
        if where.get(key) is not None and where.get("pool") != "prefork":
            parts.append(f"{word} {where[key]}")
    if where.get("asyncio_task") is not None:
        parts.append(f"asyncio task {str(where['asyncio_task']).split('@', 1)[0]}")
    return ", ".join(parts)


# the seed's tree
def _connections(process: dict[str, Any]) -> Node:
    names = [
        f"{c['name']}{'' if c.get('own', True) else ' inherited'} ({c['kind']})"
        for c in process.get("connections") or []
    ]
    text = compact_connections(names) if names else "none"
    return {"kind": "connections", "label": "connections:", "detail": text, "children": []}


def _task(task: dict[str, Any], label: str = "running") -> Node:
    return {"kind": "task", "label": f"{label}:", "task": task, "children": []}


def worker_nodes(tree: dict[str, Any]) -> list[Node]:
    """One worker's ``inspect tree`` reply as nodes: manager → children / threads /
    greenlets / event loop → connections and the task running there now."""
    manager = next((p for p in tree.get("processes") or [] if p["role"] == "manager"), None)
    if manager is None:
        return [{"kind": "error", "label": "the worker did not find its own process"}]
    children = [p for p in tree["processes"] if p["role"] == "child"]
    role = "manager" if tree.get("pool") == "prefork" or children else "the only process"
    node: Node = {
        "kind": "manager",
        "pid": manager["pid"],
        "label": f"进程 PID {manager['pid']} (主进程 - {role})",
        "detail": f"{manager['num_threads']} OS thread(s)",
        "children": [_connections(manager)],
    }
    running = tree.get("running") or []
    if tree.get("pool") == "prefork":
        node["children"].append(_forks(tree, children, running))
    else:
        node["children"].extend(_threads(tree, manager, running))
    return [node]


def _forks(tree: dict[str, Any], children: list[dict[str, Any]], running: list[Any]) -> Node:
    by_pid = defaultdict(list)
    for task in running:
        by_pid[task.get("pid")].append(task)
    forks: Node = {
        "kind": "forks",
        "label": f"Fork 子进程 (--concurrency={tree.get('concurrency')})",
        "children": [],
    }
    ordered = sorted(children, key=lambda p: (p["child_index"] is None, p["child_index"] or 0))
    for child in ordered:
        index = child.get("child_index")
        tasks = by_pid.get(child["pid"]) or []
        forks["children"].append(
            {
                "kind": "child",
                "pid": child["pid"],
                "label": f"子进程 PID {child['pid']}",
                "detail": (
                    f"(Worker-{index + 1 if index is not None else '?'}) ppid {child['ppid']}, "
                    f"{child['num_threads']} thread(s)" + ("" if tasks else ", idle")
                ),
                "children": [_connections(child)] + [_task(t) for t in tasks],
            }
        )
    return forks


def _threads(tree: dict[str, Any], manager: dict[str, Any], running: list[Any]) -> list[Node]:
    by_thread = defaultdict(list)
    for task in running:
        by_thread[task.get("thread_id")].append(task)
    nodes = []
    for thread in manager.get("threads") or []:
        is_loop = tree.get("pool") == "asyncio" and thread["name"] == "MainThread"
        nodes.append(
            {
                "kind": "thread",
                "label": f"{'event loop' if is_loop else 'OS thread'} {thread['name']}",
                "detail": f"native id {thread['native_id']}",
                "children": [_green(t) for t in by_thread.pop(thread["ident"], [])],
            }
        )
    rest = [task for tasks in by_thread.values() for task in tasks]
    if rest:
        nodes.append(
            {
                "kind": "thread",
                "label": "OS thread MainThread",
                "children": [_green(t) for t in rest],
            }
        )
    return nodes


def _green(task: dict[str, Any]) -> Node:
    if task.get("greenlet") is not None:
        return _task(task, f"协程 greenlet {task['greenlet']} running")
    if task.get("asyncio_task") is not None:
        return _task(task, f"协程 asyncio task {str(task['asyncio_task']).split('@', 1)[0]}")
    return _task(task)


def worker_view(row: dict[str, Any]) -> dict[str, Any]:
    tree = row.get("tree") or {}
    stats = row.get("stats") or {}
    pool_stats = stats.get("pool") if isinstance(stats.get("pool"), dict) else {}
    total = stats.get("total")
    processed = row.get("processed") or (sum(total.values()) if isinstance(total, dict) else 0)
    return {
        **row,
        "pool": tree.get("pool") or row.get("pool"),
        "concurrency": tree.get("concurrency") or (pool_stats or {}).get("max-concurrency"),
        "pid": tree.get("pid") or row.get("pid"),
        "queues": tree.get("queues") or [],
        "processed": processed,
        "active": len(tree["running"]) if tree.get("running") is not None else row.get("active"),
        "loadavg": row.get("loadavg") or stats.get("rusage", {}).get("loadavg", []) or [],
        "nodes": worker_nodes(tree) if tree else [],
    }


# a task's workflow
def family_nodes(records: list[dict[str, Any]], current: str) -> list[Node]:
    """The tasks of one workflow as a tree by parent id (a chain is a line, a group a fan)."""
    if len(records) <= 1:
        return []
    ids = {r["uuid"] for r in records}
    kids: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        parent = record.get("parent_id")
        kids[parent if parent in ids else None].append(record)

    def build(record: dict[str, Any], depth: int) -> Node:
        mine = "this task · " if record["uuid"] == current else ""
        below = kids.get(record["uuid"], []) if depth < 50 else []
        return {
            "kind": "member",
            "label": f"{record.get('name') or '?'}",
            "detail": f"{mine}{record['state']} · {record['uuid']}",
            "children": [build(r, depth + 1) for r in below],
        }

    tops: list[Node] = []
    by_group: dict[str, Node] = {}
    for record in kids.get(None, []):
        group = record.get("group")
        if not group:
            tops.append(build(record, 0))
            continue
        if group not in by_group:
            by_group[group] = {"kind": "group", "label": f"group {group}", "children": []}
            tops.append(by_group[group])
        by_group[group]["children"].append(build(record, 0))
    return tops
