"""checks.py: the seed's table holds for healthy pools and catches each contradiction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from celeriac.demo.checks import CHECKS, SEED_ROWS, check, contradicts, failed_tasks
from celeriac.demo.measure import measure
from celeriac.demo.model import Check, ConnInfo, Observation, ProcInfo, TaskRecord
from celeriac.demo.plan import ALL_POOLS
from tests.unit.test_demo_measure import MANAGER, healthy, record


def failing(checks: list[Check]) -> list[str]:
    return [c.name for c in checks if c.ok is False]


def with_records(obs: Observation, transform: Callable[[TaskRecord], TaskRecord]) -> Observation:
    return replace(obs, records=[transform(r) for r in obs.records])


@pytest.mark.parametrize("pool", ALL_POOLS)
def test_a_pool_that_behaves_as_the_seed_says_passes_every_check(pool: str) -> None:
    checks = check(measure(healthy(pool)))
    assert failing(checks) == []
    assert not contradicts(checks)


def test_every_pool_has_checks_and_a_seed_row() -> None:
    assert set(CHECKS) == set(ALL_POOLS) == set(SEED_ROWS)


def test_prefork_task_in_the_manager_contradicts_the_seed() -> None:
    obs = healthy("prefork")
    obs.records[0] = record(0, 0.1, batch="seed", call="add(3, 5)", pid=MANAGER)
    assert "task runs in" in failing(check(measure(obs)))


def test_prefork_with_fewer_children_than_concurrency_contradicts_the_seed() -> None:
    obs = healthy("prefork")
    obs.processes = obs.processes[:-1]
    assert "processes" in failing(check(measure(obs)))


def test_prefork_cpu_tasks_that_never_overlap_are_not_parallel() -> None:
    obs = healthy("prefork")
    cpu = [r for r in obs.records if r.batch == "cpu"]
    serial = {id(r): i for i, r in enumerate(cpu)}

    def one_at_a_time(r: TaskRecord) -> TaskRecord:
        if id(r) not in serial:
            return r
        start = 100 + serial[id(r)]
        return replace(r, place={**r.place, "started_at": start, "finished_at": start + 0.5})

    failed = failing(check(measure(with_records(obs, one_at_a_time))))
    assert "concurrency" in failed


def test_prefork_cpu_tasks_all_in_one_child_are_not_spread() -> None:
    obs = healthy("prefork")

    def to_first_child(r: TaskRecord) -> TaskRecord:
        if r.batch != "cpu":
            return r
        return replace(r, place={**r.place, "pid": MANAGER + 1, "child_index": 0})

    assert "children used" in failing(check(measure(with_records(obs, to_first_child))))


def test_prefork_child_without_its_own_connection_contradicts_the_seed() -> None:
    obs = healthy("prefork")
    assert obs.connections is not None
    obs.connections = [c for c in obs.connections if c.pid != MANAGER + 2]
    assert failing(check(measure(obs))) == ["connections"]


def test_prefork_socket_shared_with_the_manager_contradicts_the_seed() -> None:
    obs = healthy("prefork")
    assert obs.connections is not None
    obs.connections.append(ConnInfo(MANAGER + 1, "broker", "x", own=False, shared_with=(MANAGER,)))
    assert failing(check(measure(obs))) == ["connections"]


def test_unmeasurable_connections_are_reported_but_never_a_contradiction() -> None:
    obs = healthy("prefork")
    obs.connections = None
    checks = check(measure(obs))
    connections = next(c for c in checks if c.name == "connections")
    assert connections.ok is None
    assert not contradicts(checks)


def test_solo_with_overlapping_tasks_contradicts_the_seed() -> None:
    obs = healthy("solo")
    obs.records.append(record(20.05, 20.1))
    assert failing(check(measure(obs))) == ["concurrency"]


def test_solo_with_a_child_process_contradicts_the_seed() -> None:
    obs = healthy("solo")
    obs.processes.append(ProcInfo(MANAGER + 1, MANAGER, "stray", 1))
    assert failing(check(measure(obs))) == ["processes"]


def test_solo_connection_held_by_another_process_contradicts_the_seed() -> None:
    obs = healthy("solo")
    assert obs.connections is not None
    obs.connections.append(ConnInfo(4242, "broker", "celeriac.worker.4242"))
    assert failing(check(measure(obs))) == ["connections"]


def test_gevent_io_tasks_in_two_os_threads_contradict_the_seed() -> None:
    obs = healthy("gevent")

    def second_thread(r: TaskRecord) -> TaskRecord:
        if r.batch != "io" or r.place["greenlet"] % 2:
            return r
        return replace(r, place={**r.place, "thread_id": 1})

    assert "I/O tasks run in" in failing(check(measure(with_records(obs, second_thread))))


def test_gevent_io_tasks_whose_bodies_saw_two_native_threads_contradict_the_seed() -> None:
    obs = healthy("gevent")
    obs.records[-1] = replace(obs.records[-1], value={"native_thread_id": 2})
    assert failing(check(measure(obs))) == ["I/O tasks run in"]


def test_gevent_cpu_tasks_that_overlap_contradict_the_seed() -> None:
    obs = healthy("gevent")
    obs.records.append(record(10.1, 10.3, batch="cpu", greenlet=999))
    assert "CPU-bound" in failing(check(measure(obs)))


def test_gevent_io_tasks_that_never_overlap_are_not_cooperative() -> None:
    obs = healthy("gevent")
    io = [r for r in obs.records if r.batch == "io"]
    order = {id(r): i for i, r in enumerate(io)}

    def serial(r: TaskRecord) -> TaskRecord:
        if id(r) not in order:
            return r
        start = 50 + order[id(r)]
        return replace(r, place={**r.place, "started_at": start, "finished_at": start + 0.2})

    assert "concurrency" in failing(check(measure(with_records(obs, serial))))


def test_threads_pool_running_everything_in_one_thread_contradicts_the_claim() -> None:
    obs = healthy("threads")

    def one_thread(r: TaskRecord) -> TaskRecord:
        return replace(r, place={**r.place, "thread_id": 1}, value={"native_thread_id": 1})

    failed = failing(check(measure(with_records(obs, one_thread))))
    assert "I/O tasks run in" in failed
    assert "concurrency" in failed


def test_asyncio_io_tasks_must_be_asyncio_tasks_not_greenlets() -> None:
    obs = healthy("gevent")
    facts = replace(measure(obs), pool="asyncio")
    assert "I/O tasks run in" in failing(check(facts))


def test_a_failed_task_is_a_contradiction() -> None:
    obs = healthy("solo")
    obs.records[0] = replace(obs.records[0], state="FAILURE", value="ZeroDivisionError: x")
    checks = failed_tasks(obs.records)
    assert failing(checks) == ["tasks succeed"]
    assert "ZeroDivisionError" in checks[0].measured


@pytest.mark.parametrize("pool", ["prefork", "gevent", "threads", "asyncio"])
def test_concurrency_one_expects_one_task_at_a_time(pool: str) -> None:
    obs = healthy(pool, n=1) if pool == "prefork" else healthy(pool)
    facts = replace(measure(obs), concurrency=1)
    checks = check(facts)
    concurrency = [c for c in checks if c.name == "concurrency"]
    assert len(concurrency) == 1
    assert "one at a time" in concurrency[0].expected
    overlapping = facts.batches["io"].max_overlap > 1 or facts.batches["cpu"].max_overlap > 1
    assert concurrency[0].ok is (not overlapping)
