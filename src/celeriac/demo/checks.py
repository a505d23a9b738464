"""The seed's comparison table as checks on measured facts.

Each pool has the claims the seed makes for it (threads and asyncio: the claims celeriac
makes for its two extra pools), each compared with what the demo measured. A claim that
could not be measured (no way to list connections on this broker) is reported as such and
never counts as a contradiction; a claim that was measured and is false is one.
"""

from __future__ import annotations

from collections.abc import Callable

from .measure import ASYNCIO_TASKS, GREENLETS, PROCESSES, THREADS
from .model import BatchFact, Check, PoolFacts, TaskRecord
from .plan import CPU_TASKS

# processes, where the task runs, concurrency, connections: the seed's words for each pool
SEED_ROWS = {
    "prefork": (
        "manager + N children",
        "a child process",
        "parallel (N processes)",
        "each child its own",
    ),
    "solo": ("1 main process", "the main process", "sequential", "the main process's"),
    "eventlet": (
        "1 main process",
        "a green thread of the main process",
        "cooperative",
        "the main process's",
    ),
    "gevent": (
        "1 main process",
        "a greenlet of the main process",
        "cooperative",
        "the main process's",
    ),
    # not in the seed: celeriac's own claims for the two pools it adds
    "threads": (
        "1 main process",
        "a thread of the main process",
        "threads (one GIL)",
        "the main process's",
    ),
    "asyncio": (
        "1 main process",
        "an asyncio task on the main loop",
        "cooperative",
        "the main process's",
    ),
}


def _overlap_text(batch: BatchFact) -> str:
    across = f" across {', '.join(batch.overlap_across)}" if batch.overlap_across else ""
    busy = (
        f", {batch.cpu_parallelism:.1f} CPUs busy on average"
        if batch.cpu_parallelism is not None and batch.overlap_across
        else ""
    )
    return f"up to {batch.max_overlap} at once{across}{busy}"


def _native_note(count: int | None) -> str:
    return "" if count is None else f" (the task bodies saw {count} native thread id(s))"


def check_one_process(facts: PoolFacts) -> Check:
    return Check(
        name="processes",
        expected="1 (no child processes)",
        measured=f"{facts.process_count} (children: {facts.child_pids or 'none'})",
        ok=facts.process_count == 1,
    )


def check_in_main(facts: PoolFacts) -> Check:
    return Check(
        name="task runs in",
        expected=f"the main process (pid {facts.manager_pid})",
        measured=facts.where,
        ok=bool(facts.task_pids) and facts.task_pids == [facts.manager_pid],
    )


def check_main_connections_only(facts: PoolFacts) -> Check:
    owners = facts.own_connection_pids
    return Check(
        name="connections",
        expected="the main process's own only",
        measured=f"{facts.connection_model} [{facts.connection_source}]",
        ok=None if owners is None else owners == [facts.manager_pid],
    )


def _ran(facts: PoolFacts, pid: int, prefix: str) -> bool:
    for proc in facts.processes:
        if proc.pid == pid:
            return any(label.startswith(prefix) for label in proc.ran)
    return False


def prefork_checks(facts: PoolFacts) -> list[Check]:
    n = facts.concurrency
    children = set(facts.child_pids)
    cpu = facts.batches["cpu"]
    cpu_children = [pid for pid in facts.child_pids if _ran(facts, pid, "cpu_bound")]
    spread = min(n, CPU_TASKS)
    task_pids = set(facts.task_pids)
    workers = task_pids - {facts.manager_pid}
    owners = facts.own_connection_pids
    return [
        Check(
            "processes",
            f"manager + {n} children",
            f"{facts.process_count} (manager {facts.manager_pid} + {len(children)} children)",
            len(children) == n and facts.process_count == n + 1,
        ),
        Check(
            "task runs in",
            f"a child process (ppid {facts.manager_pid}), never the manager",
            facts.where,
            bool(task_pids) and task_pids <= children,
        ),
        Check(
            "children used",
            f"{CPU_TASKS} CPU tasks sent at once spread over {spread} children",
            f"{len(cpu_children)} children ran CPU tasks",
            len(cpu_children) == spread,
        ),
        Check(
            "concurrency",
            "parallel: CPU tasks overlap in different processes",
            _overlap_text(cpu),
            PROCESSES in cpu.overlap_across,
        ),
        Check(
            "connections",
            "each child its own, the manager its own",
            f"{facts.connection_model} [{facts.connection_source}]",
            None
            if owners is None
            else bool(workers)
            and workers <= set(owners)
            and facts.manager_pid in owners
            and not facts.shared_socket_pids,
        ),
    ]


def check_sequential(facts: PoolFacts, expected: str) -> Check:
    worst = max(facts.batches.values(), key=lambda b: b.max_overlap)
    return Check(
        "concurrency",
        expected,
        f"at most {worst.max_overlap} at once",
        all(b.max_overlap <= 1 for b in facts.batches.values()),
    )


def solo_checks(facts: PoolFacts) -> list[Check]:
    return [
        check_one_process(facts),
        check_in_main(facts),
        check_sequential(facts, "sequential: no two tasks ever overlap"),
        check_main_connections_only(facts),
    ]


def _green_checks(facts: PoolFacts, unit: str, records_word: str) -> list[Check]:
    io = facts.batches["io"]
    cpu = facts.batches["cpu"]
    io_units = [u for u in facts.units if any(label.startswith("io_bound") for label in u.ran)]
    threads = {u.os_thread for u in io_units}
    greens = {u.green for u in io_units if u.green and u.green.startswith(records_word)}
    return [
        check_one_process(facts),
        check_in_main(facts),
        Check(
            "I/O tasks run in",
            f"many {unit} of one OS thread",
            f"{len(greens)} {unit} in {len(threads)} OS thread(s)"
            + _native_note(io.native_threads),
            len(threads) == 1 and len(greens) > 1 and io.native_threads in (None, 1),
        ),
        Check(
            "concurrency",
            f"cooperative: I/O tasks overlap as {unit} of one thread",
            _overlap_text(io),
            io.max_overlap > 1 and io.overlap_across == [unit],
        ),
        Check(
            "CPU-bound",
            "no overlap: a CPU loop never yields (seed: not for CPU-bound work)",
            _overlap_text(cpu),
            cpu.max_overlap <= 1,
        ),
        check_main_connections_only(facts),
    ]


def gevent_checks(facts: PoolFacts) -> list[Check]:
    return _green_checks(facts, GREENLETS, "greenlet")


def asyncio_checks(facts: PoolFacts) -> list[Check]:
    return _green_checks(facts, ASYNCIO_TASKS, "asyncio_task")


def threads_checks(facts: PoolFacts) -> list[Check]:
    io = facts.batches["io"]
    io_threads = {
        u.os_thread for u in facts.units if any(label.startswith("io_bound") for label in u.ran)
    }
    return [
        check_one_process(facts),
        check_in_main(facts),
        Check(
            "I/O tasks run in",
            "several threads of the main process",
            f"{len(io_threads)} threads" + _native_note(io.native_threads),
            len(io_threads) > 1 and (io.native_threads is None or io.native_threads > 1),
        ),
        Check(
            "concurrency",
            "I/O tasks overlap in different threads",
            _overlap_text(io),
            THREADS in io.overlap_across,
        ),
        check_main_connections_only(facts),
    ]


CHECKS: dict[str, Callable[[PoolFacts], list[Check]]] = {
    "prefork": prefork_checks,
    "solo": solo_checks,
    "gevent": gevent_checks,
    "eventlet": gevent_checks,
    "threads": threads_checks,
    "asyncio": asyncio_checks,
}


# claims about how many slots run at once, which --concurrency=1 replaces with "one"
SLOT_CLAIMS = frozenset({"concurrency", "I/O tasks run in", "CPU-bound"})


def check(facts: PoolFacts) -> list[Check]:
    checks = CHECKS[facts.pool](facts)
    if facts.concurrency == 1 and facts.pool != "solo":
        checks = [c for c in checks if c.name not in SLOT_CLAIMS]
        checks.append(check_sequential(facts, "one at a time: --concurrency=1 gives one slot"))
    return checks


def failed_tasks(records: list[TaskRecord]) -> list[Check]:
    """A task that did not succeed is a contradiction too: the seed's tasks all return."""
    bad = [r for r in records if r.state != "SUCCESS"]
    if not bad:
        return []
    return [
        Check(
            "tasks succeed",
            "every task SUCCESS",
            ", ".join(f"{r.call}: {r.state} {r.value!r}" for r in bad[:3]),
            False,
        )
    ]


def contradicts(checks: list[Check]) -> bool:
    return any(c.ok is False for c in checks)
