"""RSS of a worker over many no-op tasks: does it grow beyond noise?

Starts its own redis-server and one worker per pool asked for, publishes N ``growth.noop``
tasks, and samples the resident memory of the worker's processes (manager and children
summed, and each) when 1k, 10k, 50k and N tasks are done. Prints the curve as a table.

    .venv/bin/python -m bench.soak_rss --tasks 100000 --pools solo,prefork

The CI-sized version is tests/integration/test_growth.py (slow marker, 20k tasks).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from celeriac import Celery  # noqa: E402
from tests.support.redis_server import cleanup, start_redis  # noqa: E402
from tests.support.workers import WorkerProcess, start_celeriac_worker  # noqa: E402

PUBLISH_BATCH = 1000


@dataclass
class RssCurve:
    pool: str
    tasks: int
    samples: list[tuple[int, float, list[float]]] = field(default_factory=list)  # done, MiB

    def growth_mib(self) -> float:
        """From the first checkpoint (warm) to the last."""
        return self.samples[-1][1] - self.samples[0][1] if len(self.samples) > 1 else 0.0

    def table(self) -> str:
        lines = [f"{self.pool}: RSS (MiB) by tasks done"]
        for done, total, each in self.samples:
            parts = " + ".join(f"{x:.1f}" for x in each)
            lines.append(f"  {done:>7} done: {total:7.1f}  ({parts})")
        lines.append(f"  growth after the first checkpoint: {self.growth_mib():+.1f} MiB")
        return "\n".join(lines)


def rss_mib(worker: WorkerProcess) -> tuple[float, list[float]]:
    procs = [psutil.Process(worker.pid), *worker.children()]
    each = []
    for proc in procs:
        try:
            each.append(proc.memory_info().rss / 2**20)
        except psutil.NoSuchProcess:
            continue
    return sum(each), each


def publish(app: Celery, count: int) -> None:
    for _ in range(count):
        app.send_task("growth.noop")


def measure(
    redis_url: str, backend_url: str, pool: str, tasks: int, checkpoints: list[int]
) -> RssCurve:
    """Run *tasks* no-op tasks on one worker and sample its RSS at each checkpoint."""
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    app = Celery("soak_client", broker=redis_url, backend=backend_url)
    args = ["-P", pool, "-c", "1" if pool == "solo" else "2", "-l", "info"]
    worker = start_celeriac_worker("growth_tasks", redis_url, *args, backend_url=backend_url)
    curve = RssCurve(pool, tasks)
    try:
        published = 0
        for checkpoint in sorted(c for c in checkpoints if c <= tasks):
            while published < checkpoint:  # keep the queue short: memory, not a backlog
                step = min(PUBLISH_BATCH, checkpoint - published)
                publish(app, step)
                published += step
            deadline = time.monotonic() + 600
            while r.llen("celery") + r.hlen("unacked") > 0:
                if worker.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker stopped draining:\n{worker.log()[-2000:]}")
                time.sleep(0.05)
            total, each = rss_mib(worker)
            curve.samples.append((checkpoint, total, each))
    finally:
        worker.stop()
        app.close()
        r.close()
    return curve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--pools", default="solo,prefork")
    args = parser.parse_args(argv)
    checkpoints = [1_000, 10_000, 50_000, args.tasks]
    server = start_redis()
    try:
        for pool in args.pools.split(","):
            curve = measure(server.url(0), server.url(1), pool, args.tasks, checkpoints)
            print(curve.table(), flush=True)
    finally:
        cleanup(server)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
