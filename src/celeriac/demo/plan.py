"""What the demo runs: which pools, at what concurrency, and which tasks each one gets.

Batches are small on purpose (the whole ``--pool all`` run must fit in a minute on two
cores) but big enough to tell the pools apart: 8 CPU tasks show whether processes run in
parallel, 20 I/O waits show whether one thread interleaves many tasks.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass

from .work import burn

# the seed's order first, then the two pools celeriac adds
ALL_POOLS = ("prefork", "solo", "eventlet", "gevent", "threads", "asyncio")

# The seed's own numbers where it gives them (prefork -c 4, gevent/eventlet -c 100).
DEFAULT_CONCURRENCY = {
    "prefork": 4,
    "solo": 1,
    "threads": 10,
    "gevent": 100,
    "eventlet": 100,
    "asyncio": 100,
}

CPU_TASKS = 8
CPU_TASK_S = 0.2
IO_TASKS = 20
IO_TASK_S = 0.2

# pools that need a library celeriac does not depend on
EXTRAS = {"gevent": "gevent", "eventlet": "eventlet"}


@dataclass(frozen=True)
class Call:
    batch: str
    task: str
    args: tuple[object, ...]
    label: str


def concurrency_for(pool: str, requested: int | None) -> int:
    if pool == "solo":
        return 1
    return requested if requested is not None else DEFAULT_CONCURRENCY[pool]


def missing_library(pool: str) -> str | None:
    """The pip command that would enable *pool*, when its library is not installed."""
    module = EXTRAS.get(pool)
    if module is None or importlib.util.find_spec(module) is not None:
        return None
    return f"pip install 'celeriac[{module}]'"


def calibrate(target_s: float = CPU_TASK_S) -> int:
    """How many ``burn`` iterations take about *target_s* of CPU on this machine.

    Measured once in the demo process, so every pool gets the same amount of work; the
    fastest of three runs filters out a neighbour stealing the CPU for a moment.
    """
    probe = 50_000
    best = min(_time_burn(probe) for _ in range(3))
    return max(1_000, int(probe * target_s / max(best, 1e-6)))


def _time_burn(iterations: int) -> float:
    started = time.thread_time()
    burn(iterations)
    return time.thread_time() - started


def calls_for(pool: str, iterations: int, http_url: str) -> list[Call]:
    """The seed's tasks, then the CPU batch, then the I/O batch.

    The asyncio pool gets the ``async def`` variants: a plain function there runs in a
    thread, which would show threads, not the event loop.
    """
    suffix = "_async" if pool == "asyncio" else ""
    seed = [
        Call("seed", "tasks.basic_tasks.add", (3, 5), "add(3, 5)"),
        Call("seed", "tasks.basic_tasks.multiply", (4, 6), "multiply(4, 6)"),
        Call("seed", "tasks.advanced_tasks.complex_task", (3,), "complex_task(3)"),
        Call("seed", "tasks.realworld_tasks.fetch_url", (http_url,), "fetch_url(loopback)"),
    ]
    cpu = [
        Call("cpu", f"tasks.realworld_tasks.cpu_bound{suffix}", (iterations,), "cpu_bound")
        for _ in range(CPU_TASKS)
    ]
    io = [
        Call("io", f"tasks.realworld_tasks.io_bound{suffix}", (IO_TASK_S,), "io_bound")
        for _ in range(IO_TASKS)
    ]
    return [*seed, *cpu, *io]
