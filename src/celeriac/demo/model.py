"""The demo's records and facts, as plain dataclasses so ``--json`` is just ``asdict``.

Raw observations (what the worker recorded and what was seen from outside) are kept apart
from the facts derived from them, so the derivation can be tested on synthetic records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Place = dict[str, Any]


@dataclass(frozen=True)
class TaskRecord:
    """One task the demo sent and got back: what it was, and where it says it ran."""

    batch: str  # "seed", "cpu" or "io"
    task: str  # the full task name, e.g. tasks.basic_tasks.add
    call: str  # how the demo called it, e.g. add(3, 5)
    task_id: str
    state: str
    value: object
    place: Place

    @property
    def started_at(self) -> float | None:
        value = self.place.get("started_at")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def finished_at(self) -> float | None:
        value = self.place.get("finished_at")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def pid(self) -> int | None:
        value = self.place.get("pid")
        return int(value) if isinstance(value, int) else None

    @property
    def os_thread(self) -> int | None:
        """The OS thread the worker recorded (green pools report their one real thread)."""
        value = self.place.get("thread_id")
        return int(value) if isinstance(value, int) else None

    @property
    def native_thread(self) -> int | None:
        """The OS thread as the task body itself saw it, when the task reports it.

        A cross-check that does not depend on the worker's bookkeeping: gevent and eventlet
        patch ``threading.get_ident`` per greenlet but leave ``get_native_id`` alone.
        """
        if isinstance(self.value, dict):
            native = self.value.get("native_thread_id")
            if isinstance(native, int):
                return native
        return None

    @property
    def green_unit(self) -> str | None:
        """The greenlet or asyncio task the body ran in, if any."""
        for key in ("greenlet", "asyncio_task"):
            value = self.place.get(key)
            if value is not None:
                return f"{key}:{value}"
        return None


@dataclass(frozen=True)
class ProcInfo:
    """A process of the worker's tree, as psutil saw it while the worker ran."""

    pid: int
    ppid: int
    name: str
    num_threads: int


@dataclass(frozen=True)
class ConnInfo:
    """A broker or backend connection and the process that owns it."""

    pid: int
    kind: str  # "broker", "backend", "broker+backend" (one SQLite file) or "amqp"
    name: str  # Redis client name, SQLite files held open, or an AMQP socket's two ends
    own: bool = True  # opened by this process, not inherited across fork
    shared_with: tuple[int, ...] = ()  # other pids holding the very same socket


@dataclass
class Observation:
    """Everything one pool's run produced, before interpretation."""

    pool: str
    concurrency: int
    manager_pid: int
    processes: list[ProcInfo]
    connections: list[ConnInfo] | None  # None: this broker gives no way to see them
    connection_source: str
    records: list[TaskRecord]
    client_wall_s: dict[str, float] = field(default_factory=dict)


@dataclass
class ProcessFact:
    """One process of the measured tree, with what ran in it."""

    pid: int
    ppid: int
    role: str  # "manager" or "child"
    child_index: int | None
    num_threads: int
    connections: list[str]
    ran: dict[str, int]  # call label -> how many times


@dataclass
class UnitFact:
    """One execution slot inside a process: a thread, a greenlet or an asyncio task."""

    pid: int
    os_thread: int | None
    thread_name: str | None
    green: str | None
    ran: dict[str, int]


@dataclass
class BatchFact:
    """How one batch ran: its span, how many tasks overlapped, and across what."""

    name: str
    tasks: int
    span_s: float | None
    client_wall_s: float | None
    max_overlap: int
    native_threads: int | None  # distinct OS threads the task bodies reported
    overlap_across: list[str]  # "processes", "threads", "greenlets", "asyncio tasks"
    cpu_parallelism: float | None  # sum of task CPU seconds / span


@dataclass
class PoolFacts:
    """The facts the seed's table talks about, for one pool."""

    pool: str
    concurrency: int
    manager_pid: int
    process_count: int
    child_pids: list[int]
    task_pids: list[int]
    where: str
    concurrency_mode: str
    connection_model: str
    connection_source: str
    own_connection_pids: list[int] | None  # None: not measurable on this broker
    shared_socket_pids: list[int]
    processes: list[ProcessFact]
    units: list[UnitFact]
    batches: dict[str, BatchFact]
    seed_calls: list[dict[str, object]]


@dataclass
class Check:
    """One line of the seed's table compared with what was measured."""

    name: str
    expected: str
    measured: str
    ok: bool | None  # None: could not be measured here


@dataclass
class PoolReport:
    """The outcome for one pool: measured and checked, skipped, or failed to run."""

    pool: str
    status: str  # "ok", "contradiction", "skipped", "error"
    reason: str | None = None
    install: str | None = None
    facts: PoolFacts | None = None
    checks: list[Check] = field(default_factory=list)
    log_tail: list[str] = field(default_factory=list)


@dataclass
class DemoReport:
    """The whole run, what ``--json`` prints."""

    celeriac: str
    broker: str
    cpu_count: int
    cpu_batch: dict[str, object]
    io_batch: dict[str, object]
    pools: list[PoolReport]
    elapsed_s: float = 0.0
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(
            report.status in ("ok", "skipped") for report in self.pools
        )
