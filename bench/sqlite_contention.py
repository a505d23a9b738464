"""Two producers and two prefork workers on one SQLite file: any "database is locked", any
task lost or run twice?

    .venv/bin/python -m bench.sqlite_contention --seconds 120
    .venv/bin/python -m bench.sqlite_contention produce URL LABEL SECONDS RATE   (one producer)

Each producer is a process of its own sending ``chaos.record`` tasks with labels of its own at
RATE per second for SECONDS, then printing how many it sent; the tasks record each run in a
Redis (started here), so lost and duplicated tasks are counted exactly. The CI-sized run (20 s)
is tests/integration/test_growth.py.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from celeriac import Celery  # noqa: E402
from tests.support.redis_server import cleanup, start_redis  # noqa: E402
from tests.support.workers import WorkerProcess, start_celeriac_worker, subprocess_env  # noqa: E402

LOCKED = "database is locked"


def produce(url: str, label: str, seconds: float, rate: float) -> int:
    """Send tasks labelled ``<label>-<n>`` at *rate* per second for *seconds*."""
    app = Celery(f"producer-{label}", broker=url, backend=url)
    run = os.environ["CONTENTION_RUN"]
    sent = 0
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            if sent < elapsed * rate:
                app.send_task("chaos.record", (run, f"{label}-{sent:06d}", 0.0))
                sent += 1
            else:
                time.sleep(0.002)  # pacing the producer, not a synchronisation
    finally:
        app.close()
    return sent


@dataclass
class ContentionReport:
    sent: int
    done: int
    duplicates: dict[str, int]
    locked_lines: list[str]
    drain_s: float

    def summary(self) -> str:
        return (
            f"sent={self.sent} done={self.done} lost={self.sent - self.done} "
            f"duplicates={len(self.duplicates)} 'database is locked'={len(self.locked_lines)} "
            f"drained {self.drain_s:.1f}s after the producers stopped"
        )


def run_contention(
    url: str, record_url: str, seconds: float, rate: float, workdir: Path
) -> ContentionReport:
    """2 producers and 2 prefork -c 2 workers on *url* (a sqlite:/// URL) for *seconds*."""
    run = f"contention-{uuid.uuid4().hex[:8]}"
    records = redis.Redis.from_url(record_url)
    env = {"TEST_RECORD_URL": record_url, "CONTENTION_RUN": run}
    workers: list[WorkerProcess] = []
    outputs: list[Path] = []
    try:
        for index in range(2):
            workers.append(
                start_celeriac_worker(
                    "chaos_tasks", url, "-P", "prefork", "-c", "2", "-n", f"w{index}@%h",
                    backend_url=url, env_extra=env,
                )
            )  # fmt: skip
        producers = []
        for index in range(2):
            out = workdir / f"producer{index}.log"
            outputs.append(out)
            cmd = [sys.executable, "-m", "bench.sqlite_contention", "produce", url]
            cmd += [f"p{index}", str(seconds), str(rate)]
            with out.open("wb") as sink:
                producers.append(
                    subprocess.Popen(
                        cmd, cwd=ROOT, env=subprocess_env(url, url, **env), stdout=sink,
                        stderr=subprocess.STDOUT,
                    )
                )  # fmt: skip
        sent = 0
        for proc, out in zip(producers, outputs, strict=True):
            code = proc.wait(seconds + 60)
            text = out.read_text(errors="replace")
            if code != 0:
                raise RuntimeError(f"a producer failed ({code}):\n{text[-3000:]}")
            sent += int(text.strip().splitlines()[-1])
        stopped = time.monotonic()
        deadline = stopped + 120
        while records.scard(f"{run}:done") < sent and time.monotonic() < deadline:
            time.sleep(0.1)
        drain_s = time.monotonic() - stopped
        runs = {k.decode(): int(v) for k, v in records.hgetall(f"{run}:runs").items()}  # type: ignore[union-attr]
        logs = [w.log() for w in workers] + [o.read_text(errors="replace") for o in outputs]
        return ContentionReport(
            sent=sent,
            done=int(records.scard(f"{run}:done")),
            duplicates={label: n for label, n in runs.items() if n > 1},
            locked_lines=[ln for log in logs for ln in log.splitlines() if LOCKED in ln],
            drain_s=drain_s,
        )
    finally:
        for worker in workers:
            worker.stop()
        records.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "produce":
        url, label, seconds, rate = argv[1], argv[2], float(argv[3]), float(argv[4])
        print(produce(url, label, seconds, rate), flush=True)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--rate", type=float, default=100.0, help="tasks/s per producer")
    args = parser.parse_args(argv)
    server = start_redis()
    workdir = Path(tempfile.mkdtemp(prefix="celeriac-contention-"))
    try:
        url = f"sqlite:///{workdir / 'celeriac.sqlite3'}"
        report = run_contention(url, server.url(0), args.seconds, args.rate, workdir)
        print(report.summary(), flush=True)
    finally:
        cleanup(server)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
