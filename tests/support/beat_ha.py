"""The beat high-availability run (issue 17): several real ``celeriac beat`` processes with an
every-second entry, one SIGKILLed mid-run, a real worker running what they send. Counts, per
slot of the window every beat covered, the sends (from the beats' logs, by task id) and the
runs (from the task's own record, by task id).

The CI test runs it for a few seconds; ``bench/beat_ha.py`` runs the issue's 30 s.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from celeriac.beat import slot_task_id
from celeriac.beat.store import BeatStore, open_store
from tests.support.workers import (
    TESTS_DIR,
    WorkerProcess,
    start_celeriac_worker,
    subprocess_env,
)

SENT_LINE = re.compile(r"beat: sending tick \(beat\.record\) for \S+ id ([0-9a-f-]{36})")
CLAIM_TIMEOUT_S = 3.0  # how soon a claim of the killed beat is taken over


def start_beat(
    broker_url: str,
    env_extra: dict[str, str],
    *args: str,
    app: str = "beat_tasks",
    backend_url: str | None = None,
) -> WorkerProcess:
    fd, log_name = tempfile.mkstemp(prefix="beat-", suffix=".log")
    log_file = os.fdopen(fd, "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "celeriac", "-A", app, "beat", "-l", "info", *args],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=subprocess_env(broker_url, backend_url, **env_extra),
        cwd=str(TESTS_DIR / "support"),
    )
    log_file.close()
    return WorkerProcess(process, Path(log_name))


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.05)


def last_slot(store: BeatStore, name: str = "tick") -> float:
    text = store.last_slots().get(name)
    return float(text) if text is not None else 0.0


@dataclass
class HaReport:
    slots: list[float]
    sends: Counter[str] = field(default_factory=Counter)  # task id -> times sent
    runs: Counter[str] = field(default_factory=Counter)  # task id -> times run
    killed_pid: int = 0
    logs: list[str] = field(default_factory=list)  # each beat's log, the killed one first

    def expected_ids(self) -> list[str]:
        return [slot_task_id("tick", slot) for slot in self.slots]

    def duplicate_lines(self) -> str:
        """The log lines about every task id sent more than once, for a failure message."""
        twice = [task_id for task_id, count in self.sends.items() if count > 1]
        return "\n".join(
            f"beat {index}: {line}"
            for index, log in enumerate(self.logs)
            for line in log.splitlines()
            if any(task_id in line for task_id in twice)
        )

    def summary(self) -> str:
        ids = self.expected_ids()
        return (
            f"slots={len(ids)} sends={sum(self.sends[i] for i in ids)} "
            f"runs={sum(self.runs[i] for i in ids)} "
            f"duplicate_sends={sum(c - 1 for c in self.sends.values() if c > 1)} "
            f"duplicate_runs={sum(c - 1 for c in self.runs.values() if c > 1)} "
            f"(all sends {sum(self.sends.values())}, all runs {sum(self.runs.values())})"
        )


def run_beat_ha(
    broker_url: str,
    backend_url: str,
    workdir: Path,
    *,
    window_s: float,
    kill_after_s: float,
    beats: int = 3,
) -> HaReport:
    runs_file = workdir / "runs.txt"
    env = {
        "BEAT_EVERY_S": "1",
        "BEAT_RUNS_FILE": str(runs_file),
        "BEAT_CLAIM_TIMEOUT": str(CLAIM_TIMEOUT_S),
    }
    store = open_store(broker_url)
    worker = start_celeriac_worker(
        "beat_tasks", broker_url, "-P", "threads", "-c", "4", backend_url=backend_url,
        env_extra=env,
    )  # fmt: skip
    started: list[WorkerProcess] = []
    try:
        # the worker's result backend: a beat taking over a dead beat's claim asks it first
        started = [start_beat(broker_url, env, backend_url=backend_url) for _ in range(beats)]
        for beat in started:
            beat.wait_for_log("beat: starting")
        begun = time.time()
        wait_until(lambda: last_slot(store) >= begun + 1, 15, "the first slots")
        start = last_slot(store)  # every beat is up and ticking by now
        wait_until(lambda: last_slot(store) >= start + kill_after_s, 30, "the kill time")
        started[0].signal(signal.SIGKILL)
        started[0].wait(10)
        wait_until(lambda: last_slot(store) >= start + window_s, window_s + 30, "the window end")
        end = last_slot(store)
    finally:
        for beat in started:
            beat.stop()
    report = HaReport(slots=[start + k for k in range(int(end - start) + 1)])
    report.killed_pid = started[0].pid
    for beat in started:
        report.logs.append(beat.log())
        report.sends.update(SENT_LINE.findall(report.logs[-1]))

    def all_ran() -> bool:
        text = runs_file.read_text() if runs_file.exists() else ""
        report.runs = Counter(text.split())
        return set(report.sends) <= set(report.runs)

    try:
        wait_until(all_ran, 30, "the worker to run every task sent")
    finally:
        worker.stop()
        store.close()
    return report
