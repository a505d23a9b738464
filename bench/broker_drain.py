"""Drain speed of the embedded SQLite broker next to the Redis broker, in one run.

    python -m bench.broker_drain [--n 5000] [--rounds 3]

For each round and each of (sqlite, redis) x (solo, prefork -c 2): enqueue N no-op tasks
(results off), start one celeriac worker, and time from the first task started to the last
finished (counted in a separate Redis, as the main benchmark does). Prints tasks/s medians
and the ratio Redis / SQLite.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis

from celeriac import Celeriac, protocol

from .apps.counter import DONE, FIRST, LAST
from .peers.celeriac import worker_command
from .procs import Started, child_env
from .redis_proc import RedisServer

CONFIGS = [
    ("sqlite", "solo", 1),
    ("redis", "solo", 1),
    ("sqlite", "prefork", 2),
    ("redis", "prefork", 2),
]


def enqueue(broker_url: str, n: int) -> None:
    app = Celeriac("bench-client", broker=broker_url, backend=broker_url)
    options = protocol.SendOptions(ignore_result=True)
    items = [
        ("celery", protocol.build_envelope("bench.noop", protocol.new_id(), [i], {}, options), 0)
        for i in range(n)
    ]
    for start in range(0, n, 1000):
        app.broker.publish_many(items[start : start + 1000])
    app.close()


def drain_once(
    counter: redis.Redis,
    counter_url: str,
    broker_url: str,
    pool: str,
    slots: int,
    n: int,
    logs: Path,
) -> float:
    counter.delete(DONE, FIRST, LAST)
    enqueue(broker_url, n)
    env = child_env(
        {
            "BENCH_REDIS_URL": counter_url,
            "CELERIAC_BROKER_URL": broker_url,
            "CELERIAC_RESULT_BACKEND": broker_url,
        }
    )
    cmd = worker_command(sys.executable, pool, slots)
    worker = Started(f"{pool}-{slots}", cmd, env, logs / f"{pool}-{slots}.log")
    try:
        deadline = time.monotonic() + 180
        while int(counter.get(DONE) or 0) < n:
            if not worker.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not drain {n} tasks:\n{worker.log_tail()}")
            time.sleep(0.05)
        first, last = float(counter.get(FIRST) or 0), float(counter.get(LAST) or 0)
    finally:
        worker.stop()
    return n / max(1e-9, last - first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server = RedisServer()
    rates: dict[tuple[str, str, int], list[float]] = {c: [] for c in CONFIGS}
    try:
        counter_url = server.url(15)
        counter = redis.Redis.from_url(counter_url)
        with tempfile.TemporaryDirectory(prefix="celeriac-bench-sqlite-") as tmp:
            logs = Path(tmp)
            for round_no in range(args.rounds):
                for kind, pool, slots in CONFIGS:
                    if kind == "sqlite":
                        url = f"sqlite:///{tmp}/round{round_no}-{pool}.sqlite3"
                    else:
                        redis.Redis.from_url(server.url(0)).flushdb()
                        url = server.url(0)
                    rate = drain_once(counter, counter_url, url, pool, slots, args.n, logs)
                    rates[(kind, pool, slots)].append(rate)
                    print(
                        f"round {round_no + 1}: {kind:6} {pool:7} -c {slots}: {rate:8.0f} tasks/s",
                        flush=True,
                    )
    finally:
        server.stop()
    print(f"\nmedians over {args.rounds} round(s), N={args.n}:")
    print("| broker | pool | tasks/s |")
    print("|---|---|---|")
    for (kind, pool, slots), values in rates.items():
        print(f"| {kind} | {pool} -c {slots} | {statistics.median(values):,.0f} |")
    for pool, slots in (("solo", 1), ("prefork", 2)):
        lite = statistics.median(rates[("sqlite", pool, slots)])
        red = statistics.median(rates[("redis", pool, slots)])
        print(f"{pool} -c {slots}: redis / sqlite = {red / lite:.2f}x")


if __name__ == "__main__":
    main()
