"""Draw ``inspect tree`` replies in the seed's shape, as ``celeriac demo`` draws its run:
the manager, then its children (or threads, greenlets, event loop), each one's broker and
backend connections, and the task running there now with how long it has run.

The labels keep the seed's words (主进程, 子进程, 协程) next to the English; the connection
lines are compacted by the demo's own helper.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import orjson
from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from ..demo.render import compact_connections


def _n(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _connections(tree: Tree, process: dict[str, Any]) -> None:
    names = [
        f"{c['name']}{'' if c.get('own', True) else ' inherited'} ({c['kind']})"
        for c in process.get("connections") or []
    ]
    text = compact_connections(names) if names else "none"
    tree.add(Text(f"connections: {text}", style="cyan"))


def _task_line(task: dict[str, Any]) -> Text:
    short = str(task["id"])[:8]
    return Text.assemble(
        ("running: ", "green"),
        (f"{task['name']}[{short}…]", "bold green"),
        (f" for {task['runtime_s']:.1f} s", "green"),
    )


def _green_label(task: dict[str, Any]) -> str | None:
    if task.get("greenlet") is not None:
        return f"协程 greenlet {task['greenlet']}"
    if task.get("asyncio_task") is not None:
        name = str(task["asyncio_task"]).split("@", 1)[0]
        return f"协程 asyncio task {name[:40]}"
    return None


def _prefork(reply: dict[str, Any], manager: dict[str, Any], tree: Tree) -> None:
    running = defaultdict(list)
    for task in reply.get("running") or []:
        running[task.get("pid")].append(task)
    children = sorted(
        (p for p in reply["processes"] if p["role"] == "child"),
        key=lambda p: (p["child_index"] is None, p["child_index"] or 0, p["pid"]),
    )
    forks = tree.add(f"Fork 子进程 (--concurrency={reply['concurrency']})")
    for child in children:
        index = child.get("child_index")
        label = f"Worker-{index + 1}" if index is not None else "not a pool child"
        branch = forks.add(
            Text.assemble(
                (f"子进程 PID {child['pid']}", "bold"),
                f" ({label})  ",
                (f"ppid {child['ppid']}, {_n(child['num_threads'], 'thread')}", "dim"),
            )
        )
        _connections(branch, child)
        tasks = running.get(child["pid"]) or []
        for task in tasks:
            branch.add(_task_line(task))
        if not tasks:
            branch.add(Text("idle", style="dim"))


def _in_process(reply: dict[str, Any], manager: dict[str, Any], tree: Tree) -> None:
    by_thread = defaultdict(list)
    for task in reply.get("running") or []:
        by_thread[task.get("thread_id")].append(task)
    pool = reply["pool"]
    for thread in manager.get("threads") or []:
        tasks = by_thread.pop(thread["ident"], [])
        is_loop = pool == "asyncio" and thread["name"] == "MainThread"
        kind = "event loop" if is_loop else "OS thread"
        branch = tree.add(
            Text.assemble(
                (f"{kind} {thread['name']}", "bold"),
                (f"  (native id {thread['native_id']})", "dim"),
            )
        )
        _tasks_under(branch, tasks)
    rest = [task for tasks in by_thread.values() for task in tasks]
    if rest:  # green pools patch threading: their one real thread is the main one
        green = all(_green_label(task) is not None for task in rest)
        label = "OS thread MainThread" if green else "OS thread (ended since)"
        _tasks_under(tree.add(Text(label, style="bold")), rest)


def _tasks_under(branch: Tree, tasks: list[dict[str, Any]]) -> None:
    for task in tasks:
        label = _green_label(task)
        if label is None:
            branch.add(_task_line(task))
        else:
            branch.add(Text(f"{label}: ", style="magenta") + _task_line(task))


def worker_tree(reply: dict[str, Any]) -> Tree:
    """One worker's reply as a rich tree."""
    when = time.strftime("%H:%M:%S", time.localtime(reply.get("measured_at") or time.time()))
    title = Text.assemble(
        (reply["hostname"], "bold magenta"),
        f"  -P {reply['pool']} --concurrency={reply['concurrency']}  ",
        (f"queues {', '.join(reply.get('queues') or [])}; measured {when}", "dim"),
    )
    root = Tree(title)
    manager = next((p for p in reply["processes"] if p["role"] == "manager"), None)
    if manager is None:
        root.add(Text("the worker did not find its own process", style="red"))
        return root
    children = [p for p in reply["processes"] if p["role"] == "child"]
    role = "Manager" if reply["pool"] == "prefork" or children else "唯一进程"
    threads = _n(manager["num_threads"], "OS thread")
    extra = "" if children else ", no child process"
    node = root.add(
        Text.assemble(
            (f"进程 PID {manager['pid']}", "bold"),
            f" (主进程 - {role})  ",
            (f"{threads}{extra}", "dim"),
        )
    )
    _connections(node, manager)
    if reply["pool"] == "prefork":
        _prefork(reply, manager, node)
    else:
        _in_process(reply, manager, node)
    return root


def show_tree(replies: list[dict[str, Any]], as_json: bool, no_color: bool = False) -> None:
    merged: dict[str, Any] = {}
    for body in replies:
        merged.update(body)
    if as_json:
        print(orjson.dumps(merged, option=orjson.OPT_SORT_KEYS, default=repr).decode())
        return
    console = Console(no_color=no_color, highlight=False)
    for name in sorted(merged):
        reply = merged[name]
        if isinstance(reply, dict) and "processes" in reply:
            console.print(worker_tree(reply))
        else:
            error = reply.get("error") if isinstance(reply, dict) else reply
            console.print(
                Text.assemble(
                    (name, "bold magenta"),
                    (f": no tree ({error}); is it a celeriac worker?", "red"),
                )
            )
    count = len(merged)
    console.print(f"\n{count} {'node' if count == 1 else 'nodes'} online.")
