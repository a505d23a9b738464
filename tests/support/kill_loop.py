"""The kill loop: run N acks_late tasks on a prefork worker while SIGKILLing a random child
or the whole worker at random instants, restarting the worker whenever it is gone.

Every task (tests/support/chaos_tasks.py ``chaos.record``) writes a start event before its
work and, after it, adds its label to a done set, counts the run and writes a done event, all
in a Redis the test names. From those records the loop reports tasks lost (never done),
duplicates (runs beyond the first), and for every task a kill interrupted, the time from the
kill to that task starting again (kill-to-restore).

Shared by tests/integration/test_kill_loop.py (short, in CI) and bench/kill_loop.py (full).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil
import redis

from celeriac import Celery
from tests.support.workers import WorkerProcess, start_celeriac_worker

logger = logging.getLogger(__name__)

TASK = "chaos.record"


@dataclass
class KillLoopConfig:
    broker_url: str
    backend_url: str
    record_url: str  # a Redis for the tasks' records (the broker may be SQLite)
    tasks: int
    min_kills: int
    seed: int
    concurrency: int = 2
    task_seconds: tuple[float, float] = (0.05, 0.25)
    kill_gap_s: tuple[float, float] = (1.0, 2.5)
    worker_kill_share: float = 0.4  # of the kills, how many take the whole worker
    deadline_s: float = 90.0  # for the whole run, kills and the drain after them
    # a task held through many kills must not end in the dead letters: this loop measures
    # loss, not the redelivery cap (test_recovery covers that)
    env: dict[str, str] = field(default_factory=lambda: {"TEST_MAX_REDELIVERIES": "1000"})


@dataclass(frozen=True)
class Kill:
    at: float  # time.time() just before the signal
    kind: str  # "child" or "worker"
    pids: tuple[int, ...]  # every process that died of it


@dataclass
class KillLoopReport:
    seed: int
    tasks: int
    lost: list[str]
    duplicates: int
    kills: list[Kill]
    # duplicates whose first run finished in a process that was never killed: a live
    # worker's message handed out twice (a bug), not an ack lost with a killed process
    unexplained_duplicates: list[str]
    restore_s: list[float]  # per interrupted task: kill to its next start
    # the same, counted from the last whole-worker kill before that start: a worker killed
    # while it was still starting never had the chance to restore anything, and every such
    # kill starts the clock again (the raw figure above grows with each one in a row)
    restore_settled_s: list[float]
    unrestored: list[str]  # interrupted tasks that never started again
    worker_starts: int
    elapsed_s: float
    orphans: list[int]  # children that outlived their killed manager (PDEATHSIG failed)
    # the events of the tasks behind a failed check, for the failure message
    evidence: list[str] = field(default_factory=list)

    @property
    def restore_median_s(self) -> float:
        return statistics.median(self.restore_s) if self.restore_s else 0.0

    @property
    def restore_max_s(self) -> float:
        return max(self.restore_s, default=0.0)

    @property
    def restore_settled_max_s(self) -> float:
        return max(self.restore_settled_s, default=0.0)

    def summary(self) -> str:
        kinds = [k.kind for k in self.kills]
        return (
            f"seed={self.seed} tasks={self.tasks} lost={len(self.lost)} "
            f"duplicates={self.duplicates} (unexplained={len(self.unexplained_duplicates)}) "
            f"kills={len(self.kills)} "
            f"(child={kinds.count('child')}, worker={kinds.count('worker')}) "
            f"interrupted={len(self.restore_s) + len(self.unrestored)} "
            f"kill-to-restore median={self.restore_median_s:.3f}s "
            f"max={self.restore_max_s:.3f}s "
            f"(from the last worker kill: max={self.restore_settled_max_s:.3f}s) "
            f"worker_starts={self.worker_starts} "
            f"elapsed={self.elapsed_s:.1f}s"
            + (f" unrestored={self.unrestored[:10]}" if self.unrestored else "")
            + (
                f" unexplained={self.unexplained_duplicates[:10]}"
                if self.unexplained_duplicates
                else ""
            )
            + ("\n" + "\n".join(self.evidence) if self.evidence else "")
        )


class KillLoop:
    def __init__(self, config: KillLoopConfig, log: Callable[[str], None] = print) -> None:
        self.config = config
        self.log = log
        self.rng = random.Random(config.seed)
        self.run_id = f"kl-{uuid.uuid4().hex[:12]}"
        self.records = redis.Redis.from_url(config.record_url)
        self.workers: list[WorkerProcess] = []
        self.kills: list[Kill] = []
        self.orphans: list[int] = []

    # the loop
    def run(self) -> KillLoopReport:
        config = self.config
        self.log(f"kill loop {self.run_id}: seed={config.seed} tasks={config.tasks}")
        started = time.monotonic()
        deadline = started + config.deadline_s
        try:
            worker = self._start_worker()
            self._publish()
            while time.monotonic() < deadline:
                if self._done_count() >= config.tasks:
                    break
                # the chaos schedule itself: the next kill comes at a random instant
                time.sleep(self.rng.uniform(*config.kill_gap_s))
                if self._done_count() >= config.tasks:
                    break
                worker = self._kill_something(worker)
            self._wait_all_done(deadline)
        finally:
            for process in self.workers:
                process.stop()
        return self._report(time.monotonic() - started)

    def _start_worker(self) -> WorkerProcess:
        config = self.config
        worker = start_celeriac_worker(
            "chaos_tasks",
            config.broker_url,
            "-P",
            "prefork",
            "-c",
            str(config.concurrency),
            "-n",
            f"kill{len(self.workers)}@%h",
            backend_url=config.backend_url,
            env_extra={"TEST_RECORD_URL": config.record_url, **config.env},
        )
        self.workers.append(worker)
        return worker

    def _publish(self) -> None:
        config = self.config
        app = Celery("kill_loop_client", broker=config.broker_url, backend=config.backend_url)
        try:
            for index in range(config.tasks):
                seconds = round(self.rng.uniform(*config.task_seconds), 3)
                app.send_task(
                    TASK,
                    (self.run_id, f"t{index:05d}", seconds),
                    task_id=f"{self.run_id}-{index:05d}",
                )
        finally:
            app.close()

    def _kill_something(self, worker: WorkerProcess) -> WorkerProcess:
        children = [kid.pid for kid in worker.children()]
        if not children or self.rng.random() < self.config.worker_kill_share:
            return self._kill_worker(worker, children)
        victim = self.rng.choice(children)
        self.kills.append(Kill(time.time(), "child", (victim,)))
        _sigkill(victim)
        return worker

    def _kill_worker(self, worker: WorkerProcess, children: list[int]) -> WorkerProcess:
        self.kills.append(Kill(time.time(), "worker", (worker.pid, *children)))
        _sigkill(worker.pid)
        worker.wait(10)
        # the children die with it (PR_SET_PDEATHSIG); one that does not is a bug we report
        survivors = _alive_after(children, timeout_s=5.0)
        for pid in survivors:
            _sigkill(pid)
        self.orphans.extend(survivors)
        return self._start_worker()

    def _done_count(self) -> int:
        return int(self.records.scard(f"{self.run_id}:done"))

    def _wait_all_done(self, deadline: float) -> None:
        # after the last kill, give a restarted worker's sweep time to restore and drain
        end = max(deadline, time.monotonic() + 30.0)
        while self._done_count() < self.config.tasks and time.monotonic() < end:
            time.sleep(0.1)

    # the figures
    def _report(self, elapsed_s: float) -> KillLoopReport:
        run = self.run_id
        done = {_text(x) for x in self.records.smembers(f"{run}:done")}
        runs = {_text(k): int(v) for k, v in self.records.hgetall(f"{run}:runs").items()}
        expected = [f"t{index:05d}" for index in range(self.config.tasks)]
        starts: dict[str, list[tuple[int, int, float]]] = {}
        finished: set[tuple[str, int]] = set()
        first_done: dict[str, tuple[int, int, float]] = {}
        for raw in self.records.lrange(f"{run}:events", 0, -1):
            kind, label, pid, moment, ppid = _text(raw).split()
            if kind == "S":
                starts.setdefault(label, []).append((int(pid), int(ppid), float(moment)))
            else:
                finished.add((label, int(pid)))
                first_done.setdefault(label, (int(pid), int(ppid), float(moment)))
        restore_s, restore_settled_s, unrestored = self._restores(starts, finished)
        unexplained = sorted(
            label
            for label, count in runs.items()
            if count > 1 and not self._killed_after(*_run_of(first_done[label], starts[label]))
        )
        suspects = set(unrestored[:5]) | set(unexplained[:5])
        evidence = [
            _text(raw)
            for raw in self.records.lrange(f"{run}:events", 0, -1)
            if _text(raw).split()[1] in suspects
        ]
        evidence += [f"kill {k.kind} at {k.at:.6f} pids {k.pids}" for k in self.kills]
        if not suspects:
            evidence = []
        for key in (f"{run}:done", f"{run}:runs", f"{run}:events"):
            self.records.delete(key)
        return KillLoopReport(
            seed=self.config.seed,
            tasks=self.config.tasks,
            lost=[label for label in expected if label not in done],
            duplicates=sum(max(0, count - 1) for count in runs.values()),
            unexplained_duplicates=unexplained,
            evidence=evidence,
            kills=list(self.kills),
            restore_s=restore_s,
            restore_settled_s=restore_settled_s,
            unrestored=unrestored,
            worker_starts=len(self.workers),
            elapsed_s=elapsed_s,
            orphans=list(self.orphans),
        )

    @staticmethod
    def _took(kill: Kill, pid: int, ppid: int) -> bool:
        """Whether *kill* took the process *pid* (whose parent was *ppid*). Read from the
        task's own record, not only from the kill's list: a child forked just before its
        manager was killed is in no list taken at kill time, but its ppid is the manager's."""
        return pid in kill.pids or (kill.kind == "worker" and ppid == kill.pids[0])

    def _killed_after(self, pid: int, ppid: int, started_at: float) -> bool:
        """Whether the process that ran a task from *started_at* was killed afterwards (so
        its ack, deferred to ride on its next fetch, may have died with it). Counted from
        the run's start, not its end: a kill's time is taken just before the signal, and a
        child may still finish the task in the few milliseconds the signal takes."""
        return any(kill.at > started_at and self._took(kill, pid, ppid) for kill in self.kills)

    def _restores(
        self,
        starts: dict[str, list[tuple[int, int, float]]],
        finished: set[tuple[str, int]],
    ) -> tuple[list[float], list[float], list[str]]:
        """For each task a kill interrupted (started in a killed process before the kill and
        never done there), the time from the kill to its next start anywhere, and the time
        from the last whole-worker kill before that start."""
        restore_s: list[float] = []
        settled_s: list[float] = []
        unrestored: list[str] = []
        worker_kills = [k.at for k in self.kills if k.kind == "worker"]
        for label, label_starts in starts.items():
            for pid, ppid, at in label_starts:
                if (label, pid) in finished:
                    continue
                # the kill that interrupted this run: the first after its start that took
                # its process (a later kill of the same manager cannot take it again)
                kill = next((k for k in self.kills if k.at > at and self._took(k, pid, ppid)), None)
                if kill is None:
                    continue
                later = [when for _, _, when in label_starts if when > kill.at]
                if later:
                    restart = min(later)
                    restore_s.append(restart - kill.at)
                    last = max([t for t in worker_kills if kill.at <= t < restart], default=0)
                    settled_s.append(restart - max(kill.at, last))
                else:
                    unrestored.append(label)
        return restore_s, settled_s, unrestored


def _run_of(
    done: tuple[int, int, float], starts: list[tuple[int, int, float]]
) -> tuple[int, int, float]:
    """(pid, ppid, start time) of the run that ended with *done*: the last start in the same
    process before it."""
    pid, ppid, done_at = done
    started = max((at for p, _, at in starts if p == pid and at <= done_at), default=done_at)
    return pid, ppid, started


def _sigkill(pid: int) -> None:
    # it may have just exited on its own (a child being recycled)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _alive_after(pids: list[int], timeout_s: float) -> list[int]:
    processes = []
    for pid in pids:
        try:
            processes.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(processes, timeout=timeout_s)
    return [p.pid for p in alive]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def seed_from_env(name: str = "KILL_LOOP_SEED") -> int:
    """The seed to replay (from the environment), else a fresh one; always logged."""
    value = os.environ.get(name)
    return int(value) if value else random.SystemRandom().randrange(2**32)
