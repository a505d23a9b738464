"""What the task lifecycle costs a worker with no signal receiver connected.

    python -m bench.signals_overhead [--n 10000] [--rounds 5] [--pool solo] [-c 1]

Each round drains N no-op tasks (results off) twice with one celeriac worker, in alternating
order: once as shipped (every lifecycle point is a truth test on an empty hook tuple), once
with the emission short-circuited (``execute.py`` loaded with each ``if lifecycle.X.hooks:``
compiled as ``if False:``, so the checks are gone from the bytecode). The drain is timed from
the first task started to the last finished, counted in a separate Redis database as the main
benchmark does. Prints the median rate of each and the overhead in percent (goal: < 2%).
A drain on a busy machine varies by more than 2% from run to run, so the bench first measures
the same two variants in process (``execute.handle`` over the memory broker, interleaved
rounds), which isolates the per-task Python work.
The workers log at WARNING, as every bench worker does, so the log-lines view is off too.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import redis

from .apps.counter import DONE, FIRST, LAST
from .broker_drain import enqueue
from .peers.celeriac import worker_command
from .procs import Started, child_env
from .redis_proc import RedisServer

EMISSION = re.compile(r"if lifecycle\.\w+\.hooks:")
VARIANTS = ("as shipped", "short-circuited")
LABELS = ("lifecycle as shipped, no receivers", "lifecycle emission short-circuited")


def load_execute(name: str, short_circuit: bool) -> tuple[ModuleType, int]:
    """A copy of ``celeriac.worker.execute`` registered as *name*, with its lifecycle checks
    compiled away when *short_circuit*; returns it and how many emission sites it lost."""
    import celeriac.worker  # the parent package, so the module can live under it

    spec = importlib.util.find_spec("celeriac.worker.execute")
    assert spec is not None and spec.origin is not None
    source = Path(spec.origin).read_text()
    count = 0
    if short_circuit:
        source, count = EMISSION.subn("if False:", source)
    module = ModuleType(name)
    module.__file__ = spec.origin
    module.__package__ = "celeriac.worker"
    sys.modules[name] = module  # dataclasses look their module up by name
    exec(compile(source, spec.origin, "exec"), module.__dict__)
    if name == "celeriac.worker.execute":
        celeriac.worker.execute = module
    return module, count


def worker_main(argv: list[str]) -> None:
    """``python -m bench.signals_overhead worker [--short-circuit] <celeriac args>``."""
    if argv and argv[0] == "--short-circuit":
        argv = argv[1:]
        _, removed = load_execute("celeriac.worker.execute", short_circuit=True)
        if removed < 8:
            raise SystemExit(f"only {removed} emission sites found in execute.py; update the bench")
    from celeriac.cli.main import run

    run(argv)


def drain_once(
    counter: redis.Redis,
    counter_url: str,
    broker_url: str,
    args: argparse.Namespace,
    variant: str,
    logs: Path,
) -> float:
    counter.delete(DONE, FIRST, LAST)
    redis.Redis.from_url(broker_url).flushdb()
    enqueue(broker_url, args.n)
    env = child_env(
        {
            "BENCH_REDIS_URL": counter_url,
            "CELERIAC_BROKER_URL": broker_url,
            "CELERIAC_RESULT_BACKEND": broker_url,
        }
    )
    celeriac_args = worker_command(sys.executable, args.pool, args.concurrency)[3:]
    flag = ["--short-circuit"] if variant == "short-circuited" else []
    cmd = [sys.executable, "-m", "bench.signals_overhead", "worker", *flag, *celeriac_args]
    name = variant.replace(" ", "-")
    worker = Started(name, cmd, env, logs / f"{name}.log")
    try:
        deadline = time.monotonic() + 300
        while int(counter.get(DONE) or 0) < args.n:
            if not worker.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not drain {args.n} tasks:\n{worker.log_tail()}")
            time.sleep(0.05)
        first, last = float(counter.get(FIRST) or 0), float(counter.get(LAST) or 0)
    finally:
        worker.stop()
    return float(args.n) / max(1e-9, last - first)


def per_task_us(execute: Any, n: int) -> float:
    """CPU microseconds per message through ``execute.handle`` on the memory broker."""
    from celeriac import Celeriac
    from celeriac.worker.place import worker_place

    url = f"memory://signals-{next(_runs)}"  # a fresh store each time
    app = Celeriac("bench-inproc", broker=url, backend=url)
    app.conf.task_ignore_result = True
    if "bench.inproc" not in app.tasks:
        app.task(name="bench.inproc")(_identity)
    app.send_many("bench.inproc", [(i,) for i in range(n)])
    deliveries = app.broker.fetch(["celery"], n, 0.0)
    ctx = execute.ExecContext(app=app, nodename="n@h", place_base=worker_place("n@h", "solo"))
    # this thread's CPU time: other processes on a busy machine do not count
    started = time.thread_time()
    for delivery in deliveries:
        execute.handle(ctx, delivery)
    elapsed = time.thread_time() - started
    app.close()
    return float(elapsed / n * 1e6)


_runs = itertools.count()


def _identity(x: int) -> int:
    return x


def in_process(n: int, rounds: int) -> float:
    """The same comparison without Redis or processes: the per-task Python work alone.
    Returns what the checks cost per task, in microseconds (best of each variant)."""
    shipped, _ = load_execute("bench_execute_shipped", short_circuit=False)
    bare, _ = load_execute("bench_execute_short", short_circuit=True)
    costs: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for round_no in range(rounds):
        order = [("as shipped", shipped), ("short-circuited", bare)]
        for variant, module in order if round_no % 2 == 0 else order[::-1]:
            costs[variant].append(per_task_us(module, n))
    print(f"\nin process (memory broker, execute.handle only), N={n}, {rounds} rounds:")
    print("| worker | best us/task | median us/task |")
    print("|---|---|---|")
    for variant, label in zip(VARIANTS, LABELS, strict=True):
        values = costs[variant]
        print(f"| {label} | {min(values):.2f} | {statistics.median(values):.2f} |")
    best_with, best_without = min(costs["as shipped"]), min(costs["short-circuited"])
    print(f"overhead (best of each): {(best_with - best_without) / best_without * 100:+.2f}%")
    return best_with - best_without


def main() -> None:
    if sys.argv[1:2] == ["worker"]:
        worker_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pool", default="solo")
    parser.add_argument("-c", "--concurrency", type=int, default=1)
    parser.add_argument("--inproc-n", type=int, default=5_000, help="0: skip the in-process part")
    args = parser.parse_args()
    checks_us = in_process(args.inproc_n, max(4 * args.rounds, 20)) if args.inproc_n else None
    server = RedisServer()
    rates: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    try:
        counter_url = server.url(15)
        counter = redis.Redis.from_url(counter_url)
        with tempfile.TemporaryDirectory(prefix="celeriac-bench-signals-") as tmp:
            for round_no in range(args.rounds):
                order = VARIANTS if round_no % 2 == 0 else VARIANTS[::-1]  # cancel drift
                for variant in order:
                    rate = drain_once(counter, counter_url, server.url(0), args, variant, Path(tmp))
                    rates[variant].append(rate)
                    print(f"round {round_no + 1}: {variant:16} {rate:9.0f} tasks/s", flush=True)
    finally:
        server.stop()
    shipped = statistics.median(rates["as shipped"])
    bare = statistics.median(rates["short-circuited"])
    overhead = (bare - shipped) / bare * 100
    print(f"\n{args.pool} -c {args.concurrency}, N={args.n}, medians of {args.rounds} round(s):")
    print("| worker | tasks/s |")
    print("|---|---|")
    print(f"| lifecycle as shipped, no receivers | {shipped:,.0f} |")
    print(f"| lifecycle emission short-circuited | {bare:,.0f} |")
    print(f"overhead: {overhead:+.2f}% of the drain rate (goal < 2%; noisy on a busy machine)")
    if checks_us is not None:
        task_us = 1e6 / shipped
        print(
            f"the checks' in-process cost, {checks_us:.2f} us, is "
            f"{checks_us / task_us * 100:+.2f}% of a drained task's {task_us:.0f} us"
        )


if __name__ == "__main__":
    main()
