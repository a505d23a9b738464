"""Where a task runs: the seed's question, answered by the running task itself."""

from __future__ import annotations

import multiprocessing
import os
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

Place = dict[str, Any]

CHILD_NAME = "ForkPoolWorker"  # a prefork child is named CHILD_NAME-<index + 1>, as in Celery


def child_index() -> int | None:
    """A prefork child's index, from the process name it was given (ForkPoolWorker-<i+1>);
    None in any other process."""
    name = multiprocessing.current_process().name
    prefix, _, number = name.rpartition("-")
    if prefix != CHILD_NAME or not number.isdigit():
        return None
    return int(number) - 1


def greenlet_id() -> int | None:
    """The current greenlet's id when a green pool (gevent, eventlet) is running us."""
    module = sys.modules.get("greenlet")
    if module is None:
        return None
    current = module.getcurrent()
    return None if getattr(current, "parent", None) is None else id(current)


def asyncio_task_name() -> str | None:
    module = sys.modules.get("asyncio")
    if module is None:
        return None
    try:
        task = module.current_task()
    except RuntimeError:  # no running loop in this thread
        return None
    return None if task is None else f"{task.get_name()}@{id(task):#x}"


def os_thread() -> tuple[int, str]:
    """The ident and name of the OS thread running us.

    gevent's and eventlet's monkey-patching make ``threading`` report each greenlet as a
    thread of its own; the seed's question is about the real one, which green pools only
    ever run on as the main thread, so that is the case to see through.
    """
    main = threading.main_thread()
    if main.ident is not None and threading.get_native_id() == main.native_id:
        return main.ident, main.name
    return threading.get_ident(), threading.current_thread().name


def current_place(base: Place, extras: Callable[[], Place] | None = None) -> Place:
    """The worker-wide facts in *base* plus what only this thread or greenlet knows."""
    thread_id, thread_name = os_thread()
    place = dict(base)
    place.update(
        pid=os.getpid(),
        ppid=os.getppid(),
        thread_id=thread_id,
        thread_name=thread_name,
    )
    if extras is not None:
        place.update(extras())
    return place


def worker_place(nodename: str, pool: str, child_index: int | None = None) -> Place:
    return {
        "hostname": socket.gethostname(),
        "worker": nodename,
        "pool": pool,
        "child_index": child_index,
        "greenlet": None,
        "asyncio_task": None,
    }
