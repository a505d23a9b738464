"""Turn recorded execution places into the facts the seed's table talks about.

Everything here is a pure function of an :class:`Observation`, so it is tested on
synthetic records. Concurrency is judged from the recorded ``[started_at, finished_at]``
intervals, never from wall-clock totals: two intervals that overlap ran at the same time,
and what differs between them (pid, OS thread, greenlet) says how.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from .model import (
    BatchFact,
    ConnInfo,
    Observation,
    PoolFacts,
    ProcessFact,
    TaskRecord,
    UnitFact,
)

PROCESSES = "processes"
THREADS = "threads"
GREENLETS = "greenlets"
ASYNCIO_TASKS = "asyncio tasks"

PARALLEL = "parallel"
THREADED = "threads"
COOPERATIVE = "cooperative"
SEQUENTIAL = "sequential"


def timed(records: Iterable[TaskRecord]) -> list[TaskRecord]:
    return [r for r in records if r.started_at is not None and r.finished_at is not None]


def max_overlap(records: Iterable[TaskRecord]) -> int:
    """The most tasks running at one instant. Touching intervals do not overlap."""
    events: list[tuple[float, int]] = []
    for record in timed(records):
        assert record.started_at is not None and record.finished_at is not None
        events.append((record.started_at, 1))
        events.append((record.finished_at, -1))
    # at equal times, ends (-1) sort before starts (+1)
    events.sort()
    running = best = 0
    for _, delta in events:
        running += delta
        best = max(best, running)
    return best


def overlaps(a: TaskRecord, b: TaskRecord) -> bool:
    assert a.started_at is not None and a.finished_at is not None
    assert b.started_at is not None and b.finished_at is not None
    return a.started_at < b.finished_at and b.started_at < a.finished_at


def separation(a: TaskRecord, b: TaskRecord) -> str:
    """What two simultaneous tasks did not share: a process, an OS thread, or a green unit."""
    if a.pid != b.pid:
        return PROCESSES
    if a.os_thread != b.os_thread:
        return THREADS
    green = a.green_unit or b.green_unit or ""
    return ASYNCIO_TASKS if green.startswith("asyncio_task") else GREENLETS


def overlap_kinds(records: Sequence[TaskRecord]) -> list[str]:
    """Every way in which some pair of this batch's tasks ran at the same time."""
    items = timed(records)
    kinds: set[str] = set()
    for index, first in enumerate(items):
        for second in items[index + 1 :]:
            if overlaps(first, second):
                kinds.add(separation(first, second))
    order = (PROCESSES, THREADS, GREENLETS, ASYNCIO_TASKS)
    return [kind for kind in order if kind in kinds]


def span_s(records: Iterable[TaskRecord]) -> float | None:
    """From the first task's start to the last one's end: the time the pool took."""
    items = timed(records)
    if not items:
        return None
    start = min(r.started_at for r in items if r.started_at is not None)
    end = max(r.finished_at for r in items if r.finished_at is not None)
    return end - start


def cpu_parallelism(records: Sequence[TaskRecord]) -> float | None:
    """CPU seconds the tasks report, divided by the span: ~1 for one core's worth at a time."""
    span = span_s(records)
    total = 0.0
    for record in records:
        if not isinstance(record.value, dict):
            return None
        cpu = record.value.get("cpu_s")
        if not isinstance(cpu, (int, float)):
            return None
        total += float(cpu)
    if not span or not records:
        return None
    return total / span


def native_threads(records: Sequence[TaskRecord]) -> int | None:
    natives = [r.native_thread for r in records]
    if not natives or any(n is None for n in natives):
        return None
    return len(set(natives))


def batch_fact(name: str, records: Sequence[TaskRecord], client_wall_s: float | None) -> BatchFact:
    return BatchFact(
        name=name,
        tasks=len(records),
        span_s=span_s(records),
        client_wall_s=client_wall_s,
        max_overlap=max_overlap(records),
        native_threads=native_threads(records),
        overlap_across=overlap_kinds(records),
        cpu_parallelism=cpu_parallelism(records) if name == "cpu" else None,
    )


def concurrency_mode(batches: Iterable[BatchFact]) -> str:
    """The seed's column: parallel processes, threads, cooperative green units, or none."""
    kinds = {kind for batch in batches for kind in batch.overlap_across}
    if PROCESSES in kinds:
        return PARALLEL
    if THREADS in kinds:
        return THREADED
    if kinds & {GREENLETS, ASYNCIO_TASKS}:
        return COOPERATIVE
    return SEQUENTIAL


def unit_facts(records: Iterable[TaskRecord]) -> list[UnitFact]:
    """Group tasks by the slot that ran them: (pid, OS thread, greenlet or asyncio task)."""
    units: dict[tuple[int | None, int | None, str | None], UnitFact] = {}
    for record in records:
        key = (record.pid, record.os_thread, record.green_unit)
        unit = units.get(key)
        if unit is None:
            name = record.place.get("thread_name")
            unit = UnitFact(
                pid=record.pid or 0,
                os_thread=record.os_thread,
                thread_name=name if isinstance(name, str) else None,
                green=record.green_unit,
                ran={},
            )
            units[key] = unit
        unit.ran[record.call] = unit.ran.get(record.call, 0) + 1
    return list(units.values())


def where_tasks_ran(records: Sequence[TaskRecord], manager_pid: int, child_pids: set[int]) -> str:
    """The seed's "Task 执行位置" column, in words, from the places."""
    pids = {r.pid for r in records}
    if not records:
        return "nothing ran"
    if pids <= child_pids and manager_pid not in pids:
        return f"child processes ({len(pids)} of {len(child_pids)} used)"
    if pids != {manager_pid}:
        return f"mixed: pids {sorted(p for p in pids if p is not None)}"
    batch = [r for r in records if r.batch in ("cpu", "io")] or list(records)
    threads = {r.os_thread for r in batch}
    greens = {r.green_unit for r in batch if r.green_unit is not None}
    if len(threads) > 1:
        return f"{len(threads)} threads of the main process"
    if greens and all(g.startswith("greenlet") for g in greens):
        return f"{len(greens)} greenlets in one thread of the main process"
    if greens:
        return f"{len(greens)} asyncio tasks in one thread of the main process"
    name = batch[0].place.get("thread_name")
    if name in (None, "MainThread"):
        return "the main thread of the main process"
    return f"one thread ({name}) of the main process"


def connection_model(
    connections: Sequence[ConnInfo] | None, manager_pid: int, task_pids: set[int]
) -> str:
    """The seed's "连接模型": whose connections exist, judged by which pid owns each."""
    if connections is None:
        return "not measurable on this broker"
    shared = sorted({conn.pid for conn in connections if conn.shared_with})
    if shared:
        return f"sockets shared between pids {shared}"
    owners = {conn.pid for conn in connections if conn.own}
    if not owners:
        return "no connection seen"
    if owners == {manager_pid}:
        return "main process only"
    workers = task_pids - {manager_pid}
    if workers and workers <= owners:
        others = len(owners - {manager_pid})
        manager = "manager + " if manager_pid in owners else ""
        return f"own per process ({manager}{others} children)"
    return f"held by pids {sorted(owners)}"


def process_facts(observation: Observation) -> list[ProcessFact]:
    by_pid: dict[int, Counter[str]] = {}
    index_of: dict[int, int] = {}
    for record in observation.records:
        if record.pid is None:
            continue
        by_pid.setdefault(record.pid, Counter())[record.call] += 1
        child_index = record.place.get("child_index")
        if isinstance(child_index, int):
            index_of[record.pid] = child_index
    conns: dict[int, list[str]] = {}
    for conn in observation.connections or []:
        shared = f", shared with {list(conn.shared_with)}" if conn.shared_with else ""
        conns.setdefault(conn.pid, []).append(f"{conn.name} ({conn.kind}{shared})")
    return [
        ProcessFact(
            pid=proc.pid,
            ppid=proc.ppid,
            role="manager" if proc.pid == observation.manager_pid else "child",
            child_index=index_of.get(proc.pid),
            num_threads=proc.num_threads,
            connections=sorted(conns.get(proc.pid, [])),
            ran=dict(by_pid.get(proc.pid, Counter())),
        )
        for proc in observation.processes
    ]


def seed_calls(records: Iterable[TaskRecord]) -> list[dict[str, object]]:
    """Which of the seed's own tasks ran where, for the tree drawing."""
    return [
        {
            "call": r.call,
            "task": r.task,
            "state": r.state,
            "result": r.value,
            "pid": r.pid,
            "child_index": r.place.get("child_index"),
            "os_thread": r.os_thread,
            "green": r.green_unit,
        }
        for r in records
        if r.batch == "seed"
    ]


def measure(observation: Observation) -> PoolFacts:
    manager = observation.manager_pid
    child_pids = {p.pid for p in observation.processes if p.ppid == manager and p.pid != manager}
    records = observation.records
    conns = observation.connections
    task_pids = {r.pid for r in records if r.pid is not None}
    batches = {
        name: batch_fact(
            name,
            [r for r in records if r.batch == name],
            observation.client_wall_s.get(name),
        )
        for name in ("seed", "cpu", "io")
    }
    return PoolFacts(
        pool=observation.pool,
        concurrency=observation.concurrency,
        manager_pid=manager,
        process_count=len({p.pid for p in observation.processes} | {manager}),
        child_pids=sorted(child_pids),
        task_pids=sorted(task_pids),
        where=where_tasks_ran(records, manager, child_pids),
        concurrency_mode=concurrency_mode([batches["cpu"], batches["io"]]),
        connection_model=connection_model(observation.connections, manager, task_pids),
        connection_source=observation.connection_source,
        own_connection_pids=(None if conns is None else sorted({c.pid for c in conns if c.own})),
        shared_socket_pids=sorted({c.pid for c in conns or [] if c.shared_with}),
        processes=process_facts(observation),
        units=unit_facts(records),
        batches=batches,
        seed_calls=seed_calls(records),
    )
