"""Run the benchmark: ``python -m bench.run [--quick] [--rounds 3] [--n 10000] ...``.

Starts its own redis-server, runs each workload for celeriac and every peer interleaved
(celeriac, Celery, the peers, then the next round), prints medians and ratios, and writes
bench/RESULTS.md. Every process it starts is stopped by PID, on errors and Ctrl-C too.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from . import report
from .harness import Entrant, Failed, Harness, NotApplicable, Options, log_dir
from .peers import ORDER, load
from .procs import ROOT, Registry, end_run
from .redis_proc import RedisServer
from .workloads import WORKLOADS, runner

DEFAULT_OUTPUT = ROOT / "bench" / "RESULTS.md"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description="celeriac vs Celery and its peers, on one Redis."
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3)")
    parser.add_argument("--n", type=int, default=None, help="tasks per workload (default 10000)")
    parser.add_argument("--roundtrips", type=int, default=None, help="W3 calls (default 500)")
    parser.add_argument("--quick", action="store_true", help="smoke run: n=300, 1 round")
    parser.add_argument(
        "--only", default=None, help=f"comma-separated workloads of {','.join(WORKLOADS)}"
    )
    parser.add_argument(
        "--peers", default=None, help=f"comma-separated peers of {','.join(ORDER[1:])} (all)"
    )
    parser.add_argument("--no-tuned", action="store_true", help="skip the tuned variants")
    parser.add_argument("--drain-timeout", type=float, default=None, help="cap per drain (s)")
    parser.add_argument("--budget", type=float, default=None, help="cap per W3 loop (s)")
    parser.add_argument("--output", type=Path, default=None, help="results file")
    parser.add_argument("--no-write", action="store_true", help="do not write a results file")
    parser.add_argument("--keep-logs", action="store_true", help="keep the process logs")
    return parser.parse_args(argv)


def make_options(args: argparse.Namespace) -> Options:
    options = Options()
    if args.quick:
        options = Options(n=300, rounds=1, roundtrips=50, budget_s=10.0, drain_timeout_s=30.0)
        options.settle_s = 1.0
    if args.rounds is not None:
        options.rounds = max(1, args.rounds)
    if args.n is not None:
        options.n = max(1, args.n)
    if args.roundtrips is not None:
        options.roundtrips = max(1, args.roundtrips)
    if args.drain_timeout is not None:
        options.drain_timeout_s = args.drain_timeout
    if args.budget is not None:
        options.budget_s = args.budget
    options.tuned = not args.no_tuned
    return options


def pick(value: str | None, allowed: tuple[str, ...], what: str) -> list[str]:
    if value is None:
        return list(allowed)
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in names if v not in allowed]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return names


def discover(h: Harness, peers: list[str], results: report.Results) -> list[str]:
    """Versions of each library in its interpreter; a missing one is reported, not dropped."""
    present = []
    for name in ["celeriac", *peers]:
        try:
            answer = h.client(name, "version", timeout_s=120)
            results.versions[name] = str(answer["version"])
            present.append(name)
        except NotApplicable:
            venv = load(name).venv
            results.versions[name] = (
                f"not installed (run: python bench/setup_envs.py --only {venv})"
                if venv
                else "not installed (pip install -e '.[bench]')"
            )
        except Failed as exc:
            results.versions[name] = f"not installed ({exc.args[0].splitlines()[-1][:120]})"
    return present


def entrants(workload: str, present: list[str], tuned: bool) -> list[Entrant]:
    if workload == "Limit":
        return [Entrant("raw")]
    out = []
    for name in present:
        out.append(Entrant(name))
        if tuned and workload in load(name).tuned_for:
            out.append(Entrant(name, tuned=True))
    return out


def peer_notes(present: list[str]) -> list[str]:
    notes = [
        "Every worker runs at log level WARNING (no library pays for per-task log lines); "
        "Celery also without gossip, mingle and heartbeat.",
        "Each task does one pipelined INCR + SET on a separate Redis key, so completions "
        "are counted independently of each library.",
    ]
    for name in present:
        peer = load(name)
        text = f"{name}: bulk path: {peer.bulk_note}"
        if peer.tuned_note:
            text += f"; tuned variant ({', '.join(sorted(peer.tuned_for))}): {peer.tuned_note}"
        if peer.venv:
            text += f"; own virtualenv .venv-bench-{peer.venv}"
        notes.append(text)
    return notes


def run(args: argparse.Namespace) -> int:
    options = make_options(args)
    workloads = pick(args.only, WORKLOADS, "workloads")
    peers = [p for p in pick(args.peers, ORDER[1:], "peers") if p != "celeriac"]
    logs = log_dir()
    registry = Registry(logs)
    results = report.Results()
    server: RedisServer | None = None
    ok = False
    try:
        server = RedisServer()
        print(f"redis-server {server.version()} on {server.url()} (pid {server.pid}); logs: {logs}")
        h = Harness(server, registry, options)
        present = discover(h, peers, results)
        for name, version in results.versions.items():
            print(f"  {name:<10} {version}")
        started = time.monotonic()
        load_start = os.getloadavg()[0]
        for round_no in range(1, options.rounds + 1):
            for workload in workloads:
                for entrant in entrants(workload, present, options.tuned):
                    print(f"[round {round_no}/{options.rounds}] {workload:<5} {entrant.label}")
                    t0 = time.monotonic()
                    runner(workload)(h, entrant, results)
                    print(f"    done in {time.monotonic() - t0:.1f}s")
        print(f"\nfinished in {time.monotonic() - started:.0f}s")
        print(report.render_text(results))
        if not args.no_write and (args.output or not args.quick):
            output = args.output or DEFAULT_OUTPUT
            command = "python -m bench.run " + shlex.join(sys.argv[1:])
            settings = {
                "workloads": ", ".join(workloads),
                "rounds": str(options.rounds),
                "tasks per workload (N)": f"{options.n:,}",
                "W3 round trips": f"{options.roundtrips} (time budget {options.budget_s:.0f}s)",
                "drain time cap": f"{options.drain_timeout_s:.0f}s",
                "duration": f"{time.monotonic() - started:.0f}s",
                "load average (1 min) at start / end": (
                    f"{load_start:.2f} / {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
                ),
            }
            text = report.render_markdown(
                results, command, settings, server.version(), peer_notes(present)
            )
            output.write_text(text)
            print(f"\nwrote {output}")
        ok = True
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every process started", file=sys.stderr)
    finally:
        code = end_run(registry, server, logs, ok, args.keep_logs)
    return code


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in background
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
