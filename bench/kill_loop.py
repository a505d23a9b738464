"""The full kill loop (issue 6): 5,000 acks_late tasks on a prefork -c 2 worker, 20+ SIGKILLs
of a random child or the whole worker, on Redis and on SQLite. Prints the figures: tasks lost,
duplicates, kill-to-restore median and max.

    .venv/bin/python -m bench.kill_loop                  # both brokers, N = 5,000, 20+ kills
    .venv/bin/python -m bench.kill_loop --broker redis --tasks 2000 --kills 30 --seed 7

It starts its own redis-server on a free loopback port (for the Redis broker and for the
tasks' records) and stops it, and every worker, by PID at the end. The loop itself is
tests/support/kill_loop.py, the one the CI test runs with N = 400.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.kill_loop import (  # noqa: E402
    KillLoop,
    KillLoopConfig,
    KillLoopReport,
    seed_from_env,
)
from tests.support.redis_server import cleanup, start_redis  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.kill_loop", description=__doc__)
    parser.add_argument("--broker", choices=["redis", "sqlite", "both"], default="both")
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--kills", type=int, default=20, help="at least this many SIGKILLs")
    parser.add_argument("--seed", type=int, default=None, help="replay a run (default: random)")
    parser.add_argument("--deadline", type=float, default=900.0, help="seconds per broker")
    return parser.parse_args(argv)


def run_one(kind: str, args: argparse.Namespace, redis_port_url: str, workdir: Path) -> bool:
    if kind == "redis":
        broker, backend = f"{redis_port_url}/0", f"{redis_port_url}/1"
    else:
        broker = backend = f"sqlite:///{workdir}/kill-loop.sqlite3"
    config = KillLoopConfig(
        broker_url=broker,
        backend_url=backend,
        record_url=f"{redis_port_url}/2",
        tasks=args.tasks,
        min_kills=args.kills,
        seed=args.seed if args.seed is not None else seed_from_env(),
        task_seconds=(0.01, 0.09),
        deadline_s=args.deadline,
    )
    report = KillLoop(config).run()
    print_report(kind, report)
    return not report.lost and not report.unrestored and len(report.kills) >= args.kills


def print_report(kind: str, report: KillLoopReport) -> None:
    kinds = [k.kind for k in report.kills]
    print(f"\n== kill loop on {kind} (seed {report.seed}) ==")
    print(f"tasks:                  {report.tasks}")
    print(f"tasks lost:             {len(report.lost)}")
    print(f"duplicates:             {report.duplicates}")
    print(f"  unexplained:          {len(report.unexplained_duplicates)}")
    print(
        f"kills:                  {len(report.kills)} "
        f"(child {kinds.count('child')}, whole worker {kinds.count('worker')})"
    )
    print(f"interrupted tasks:      {len(report.restore_s) + len(report.unrestored)}")
    print(f"kill-to-restore median: {report.restore_median_s:.3f} s")
    print(f"kill-to-restore max:    {report.restore_max_s:.3f} s")
    print(f"  max from the last worker kill: {report.restore_settled_max_s:.3f} s")
    print(f"orphaned children:      {len(report.orphans)}")
    print(f"elapsed:                {report.elapsed_s:.1f} s")
    if report.lost:
        print(f"LOST: {', '.join(report.lost[:50])}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    kinds = ["redis", "sqlite"] if args.broker == "both" else [args.broker]
    server = start_redis()
    ok = True
    try:
        with tempfile.TemporaryDirectory(prefix="celeriac-kill-loop-") as workdir:
            for kind in kinds:
                server.client(0).flushall()
                ok = run_one(kind, args, f"redis://127.0.0.1:{server.port}", Path(workdir)) and ok
    finally:
        cleanup(server)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
