"""measure.py on synthetic execution places: overlap, separation, and the table's facts."""

from __future__ import annotations

from dataclasses import replace

import pytest

from celeriac.demo.measure import (
    ASYNCIO_TASKS,
    COOPERATIVE,
    GREENLETS,
    PARALLEL,
    PROCESSES,
    SEQUENTIAL,
    THREADED,
    THREADS,
    batch_fact,
    concurrency_mode,
    connection_model,
    cpu_parallelism,
    max_overlap,
    measure,
    native_threads,
    overlap_kinds,
    span_s,
    where_tasks_ran,
)
from celeriac.demo.model import ConnInfo, Observation, ProcInfo, TaskRecord

MANAGER = 1000
MAIN_THREAD = 7000


def record(
    start: float | None,
    end: float | None,
    *,
    batch: str = "io",
    call: str = "io_bound",
    pid: int = MANAGER,
    ppid: int = 1,
    thread: int = MAIN_THREAD,
    greenlet: int | None = None,
    asyncio_task: str | None = None,
    child_index: int | None = None,
    value: object = None,
    state: str = "SUCCESS",
) -> TaskRecord:
    place: dict[str, object] = {
        "pid": pid,
        "ppid": ppid,
        "thread_id": thread,
        "thread_name": "MainThread",
        "greenlet": greenlet,
        "asyncio_task": asyncio_task,
        "child_index": child_index,
    }
    if start is not None:
        place["started_at"] = start
    if end is not None:
        place["finished_at"] = end
    return TaskRecord(batch, f"tasks.x.{call}", call, f"id-{start}-{pid}", state, value, place)


def cpu_value(cpu_s: float, native: int = 1) -> dict[str, object]:
    return {"cpu_s": cpu_s, "native_thread_id": native}


def _prefork_records(children: list[int]) -> list[TaskRecord]:
    n = len(children)

    def at(i: int, start: float, **kwargs: object) -> TaskRecord:
        slot = i % n
        return record(
            start, start + 0.2, pid=children[slot], ppid=MANAGER, child_index=slot, thread=1,
            **kwargs,  # type: ignore[arg-type]
        )  # fmt: skip

    seed = [at(i, i, batch="seed", call=f"seed{i}") for i in range(4)]
    cpu = [
        at(i, 10 + (i // n) * 0.2, batch="cpu", call="cpu_bound", value=cpu_value(0.2))
        for i in range(8)
    ]
    io = [at(i, 20 + (i // n) * 0.2) for i in range(20)]
    return seed + cpu + io


def _solo_records() -> list[TaskRecord]:
    seed = [record(i, i + 0.01, batch="seed", call=f"seed{i}") for i in range(4)]
    cpu = [
        record(10 + i * 0.2, 10.2 + i * 0.2, batch="cpu", call="cpu_bound", value=cpu_value(0.2))
        for i in range(8)
    ]
    io = [record(20 + i * 0.2, 20.2 + i * 0.2) for i in range(20)]
    return seed + cpu + io


def _green_records(kind: str) -> list[TaskRecord]:
    def unit(i: int) -> dict[str, object]:
        return {"greenlet": 500 + i} if kind == "greenlet" else {"asyncio_task": f"t{i}@0x{i:x}"}

    cpu = [
        record(
            10 + i * 0.2,
            10.2 + i * 0.2,
            batch="cpu",
            call="cpu_bound",
            value=cpu_value(0.2),
            **unit(i),
        )  # type: ignore[arg-type]
        for i in range(8)
    ]
    io = [record(20, 20.2, value={"native_thread_id": 1}, **unit(100 + i)) for i in range(20)]  # type: ignore[arg-type]
    return cpu + io


def _thread_records() -> list[TaskRecord]:
    io = [
        record(20 + (i // 10) * 0.2, 20.2 + (i // 10) * 0.2, thread=8000 + i % 10,
               value={"native_thread_id": i % 10})
        for i in range(20)
    ]  # fmt: skip
    cpu = [
        record(
            10, 11.6, batch="cpu", call="cpu_bound", thread=8000 + i, value=cpu_value(0.2, native=i)
        )
        for i in range(8)
    ]
    return cpu + io


def healthy(pool: str, n: int = 4) -> Observation:
    """What a correct worker of *pool* produces: the shape the seed describes."""
    processes = [ProcInfo(MANAGER, 1, "celeriac", 3)]
    conns = [ConnInfo(MANAGER, "broker", f"celeriac.worker.{MANAGER}")]
    if pool == "prefork":
        children = [MANAGER + 1 + i for i in range(n)]
        processes += [ProcInfo(pid, MANAGER, "celeriac", 1) for pid in children]
        conns += [ConnInfo(p, "broker", f"celeriac.child{i}.{p}") for i, p in enumerate(children)]
        records = _prefork_records(children)
    elif pool == "solo":
        records = _solo_records()
    elif pool == "threads":
        records = _thread_records()
    else:
        records = _green_records("asyncio" if pool == "asyncio" else "greenlet")
    return Observation(
        pool=pool,
        concurrency=n if pool == "prefork" else 1 if pool == "solo" else 100,
        manager_pid=MANAGER,
        processes=processes,
        connections=conns,
        connection_source="synthetic",
        records=records,
    )


def test_max_overlap_counts_tasks_running_at_one_instant() -> None:
    records = [record(0, 10), record(1, 2), record(1.5, 3), record(5, 6)]
    assert max_overlap(records) == 3


def test_touching_intervals_do_not_overlap() -> None:
    records = [record(0, 1), record(1, 2), record(2, 3)]
    assert max_overlap(records) == 1
    assert overlap_kinds(records) == []


def test_records_without_times_are_left_out() -> None:
    records = [record(0, 2), record(None, None), record(1, None)]
    assert max_overlap(records) == 1
    assert span_s(records) == 2


def test_overlap_in_different_pids_is_across_processes() -> None:
    records = [record(0, 2, pid=1), record(1, 3, pid=2)]
    assert overlap_kinds(records) == [PROCESSES]


def test_overlap_in_one_pid_different_threads_is_across_threads() -> None:
    records = [record(0, 2, thread=1), record(1, 3, thread=2)]
    assert overlap_kinds(records) == [THREADS]


def test_overlap_in_one_thread_is_across_greenlets_or_asyncio_tasks() -> None:
    greens = [record(0, 2, greenlet=1), record(1, 3, greenlet=2)]
    tasks = [record(0, 2, asyncio_task="a"), record(1, 3, asyncio_task="b")]
    assert overlap_kinds(greens) == [GREENLETS]
    assert overlap_kinds(tasks) == [ASYNCIO_TASKS]


def test_cpu_parallelism_is_cpu_seconds_over_span() -> None:
    records = [
        record(0, 1, value=cpu_value(1.0), pid=1),
        record(0, 1, value=cpu_value(0.9), pid=2),
    ]
    assert cpu_parallelism(records) == pytest.approx(1.9)


def test_cpu_parallelism_is_unknown_when_a_task_does_not_report_cpu() -> None:
    assert cpu_parallelism([record(0, 1, value=8)]) is None


def test_native_threads_counts_what_task_bodies_reported() -> None:
    same = [record(0, 1, value={"native_thread_id": 5}) for _ in range(3)]
    assert native_threads(same) == 1
    assert native_threads([*same, record(0, 1, value=8)]) is None


@pytest.mark.parametrize(
    ("cpu_kinds", "io_kinds", "mode"),
    [
        ([PROCESSES], [PROCESSES], PARALLEL),
        ([THREADS], [THREADS], THREADED),
        ([], [GREENLETS], COOPERATIVE),
        ([], [ASYNCIO_TASKS], COOPERATIVE),
        ([], [], SEQUENTIAL),
    ],
)
def test_concurrency_mode_follows_what_the_overlaps_crossed(
    cpu_kinds: list[str], io_kinds: list[str], mode: str
) -> None:
    cpu = replace(batch_fact("cpu", [], None), overlap_across=cpu_kinds)
    io = replace(batch_fact("io", [], None), overlap_across=io_kinds)
    assert concurrency_mode([cpu, io]) == mode


def test_where_tasks_ran_in_children() -> None:
    records = [record(0, 1, pid=1001, ppid=MANAGER), record(0, 1, pid=1002, ppid=MANAGER)]
    assert where_tasks_ran(records, MANAGER, {1001, 1002, 1003}) == "child processes (2 of 3 used)"


def test_where_tasks_ran_reports_a_mix_of_manager_and_children() -> None:
    records = [record(0, 1, pid=MANAGER), record(0, 1, pid=1001)]
    assert where_tasks_ran(records, MANAGER, {1001}).startswith("mixed")


def test_where_tasks_ran_in_greenlets_of_one_thread() -> None:
    records = [record(0, 1, greenlet=i) for i in range(5)]
    assert where_tasks_ran(records, MANAGER, set()) == (
        "5 greenlets in one thread of the main process"
    )


def test_where_tasks_ran_names_a_single_worker_thread() -> None:
    records = [record(0, 1, thread=5)]
    records[0].place["thread_name"] = "celeriac-thread-1"
    assert where_tasks_ran(records, MANAGER, set()) == (
        "one thread (celeriac-thread-1) of the main process"
    )
    assert where_tasks_ran([record(0, 1)], MANAGER, set()) == "the main thread of the main process"


def test_where_tasks_ran_in_threads() -> None:
    records = [record(0, 1, thread=i) for i in range(3)]
    assert where_tasks_ran(records, MANAGER, set()) == "3 threads of the main process"


def test_connection_model_main_only() -> None:
    conns = [ConnInfo(MANAGER, "broker", "a"), ConnInfo(MANAGER, "backend", "a:results")]
    assert connection_model(conns, MANAGER, {MANAGER}) == "main process only"


def test_connection_model_own_per_process() -> None:
    conns = [ConnInfo(pid, "broker", str(pid)) for pid in (MANAGER, 1001, 1002)]
    assert connection_model(conns, MANAGER, {1001, 1002}) == (
        "own per process (manager + 2 children)"
    )


def test_inherited_handles_do_not_count_as_a_process_s_own() -> None:
    conns = [
        ConnInfo(MANAGER, "broker+backend", "db fds 3"),
        ConnInfo(1001, "inherited", "db fds 3 from pid 1000", own=False),
    ]
    assert connection_model(conns, MANAGER, {1001}) == "main process only"


def test_a_shared_socket_is_named_in_the_connection_model() -> None:
    conns = [
        ConnInfo(MANAGER, "broker", "x", own=False, shared_with=(1001,)),
        ConnInfo(1001, "broker", "x", own=False, shared_with=(MANAGER,)),
    ]
    assert connection_model(conns, MANAGER, {1001}).startswith("sockets shared")


def test_connection_model_when_the_broker_gives_no_view() -> None:
    assert connection_model(None, MANAGER, {MANAGER}) == "not measurable on this broker"


def test_measure_prefork_finds_manager_children_and_parallel_cpu() -> None:
    facts = measure(healthy("prefork"))
    assert facts.process_count == 5
    assert facts.child_pids == [1001, 1002, 1003, 1004]
    assert MANAGER not in facts.task_pids
    assert facts.concurrency_mode == PARALLEL
    assert facts.batches["cpu"].max_overlap == 4
    assert facts.own_connection_pids == [MANAGER, 1001, 1002, 1003, 1004]
    manager = next(p for p in facts.processes if p.role == "manager")
    assert manager.ran == {}
    assert {p.child_index for p in facts.processes if p.role == "child"} == {0, 1, 2, 3}


def test_measure_solo_is_one_process_and_sequential() -> None:
    facts = measure(healthy("solo"))
    assert facts.process_count == 1
    assert facts.task_pids == [MANAGER]
    assert facts.concurrency_mode == SEQUENTIAL
    assert facts.batches["io"].span_s == pytest.approx(4.0)


def test_measure_gevent_is_cooperative_greenlets() -> None:
    facts = measure(healthy("gevent"))
    assert facts.concurrency_mode == COOPERATIVE
    assert facts.batches["io"].max_overlap == 20
    assert facts.batches["cpu"].max_overlap == 1
    assert facts.where == "28 greenlets in one thread of the main process"


def test_measure_groups_units_by_process_thread_and_greenlet() -> None:
    facts = measure(healthy("gevent"))
    assert len(facts.units) == 28
    assert all(unit.os_thread == MAIN_THREAD for unit in facts.units)
