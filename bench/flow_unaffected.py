"""Others keep their speed: unlimited tasks drain as fast while rate-limited ones are parked.

    python -m bench.flow_unaffected [--n 1000] [--rounds 3] [--pool prefork] [--concurrency 2]

Each round, on one queue: (alone) N unlimited no-op tasks, timed from the first started to
the last finished; (with parked) N tasks limited to 1/m across the cluster, then the same N
unlimited ones behind them. The limited ones are parked broker-side as the worker meets them
(one runs), so the unlimited ones should drain at about their speed alone. Prints the
medians and the ratio (the issue asks for >= 80%).

This module is also the worker's app (``-A bench.flow_unaffected``).
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
from celeriac.brokers.redis import DELAYED

from .apps.counter import DONE, FIRST, LAST, URL, record
from .peers.celeriac import worker_command
from .procs import Started, child_env
from .redis_proc import RedisServer

app = Celeriac("flowbench", broker=URL, backend=URL)
app.conf.task_ignore_result = True


@app.task(name="flowbench.free")
def free(x: int) -> int:
    record(time.time())
    return x


@app.task(name="flowbench.limited", rate_limit="1/m", rate_limit_scope="global")
def limited(x: int) -> int:
    return x


def enqueue(broker_url: str, name: str, n: int) -> None:
    client = Celeriac("flowbench-client", broker=broker_url, backend=broker_url)
    options = protocol.SendOptions(ignore_result=True)
    items = [
        ("celery", protocol.build_envelope(name, protocol.new_id(), [i], {}, options), 0)
        for i in range(n)
    ]
    for start in range(0, n, 1000):
        client.broker.publish_many(items[start : start + 1000])
    client.close()


def drain(url: str, n: int, parked: int, pool: str, slots: int, logs: Path) -> float:
    """Tasks/s of N free tasks sent to a running worker once *parked* limited tasks sent
    before them are parked broker-side (0: the free tasks alone)."""
    counter = redis.Redis.from_url(url)
    counter.flushdb()
    env = child_env({"BENCH_REDIS_URL": url, "CELERIAC_BROKER_URL": url})
    cmd = worker_command(sys.executable, pool, slots)
    cmd[cmd.index("bench.apps.celeriac_app")] = "bench.flow_unaffected"
    worker = Started(f"flow-{parked}", cmd, env, logs / f"flow-{parked}.log")
    try:
        deadline = time.monotonic() + 300
        if parked:
            enqueue(url, "flowbench.limited", parked)
            while int(counter.zcard(DELAYED)) < parked - 1:  # one runs, the rest park
                _check(worker, deadline, "park the limited tasks")
                time.sleep(0.05)
        enqueue(url, "flowbench.free", n)
        while int(counter.get(DONE) or 0) < n:
            _check(worker, deadline, f"drain {n} tasks")
            time.sleep(0.05)
        first, last = float(counter.get(FIRST) or 0), float(counter.get(LAST) or 0)
        still_parked = int(counter.zcard(DELAYED))
    finally:
        worker.stop()
    if still_parked < parked - 1:
        raise RuntimeError(f"only {still_parked} of {parked} limited tasks stayed parked")
    return n / max(1e-9, last - first)


def _check(worker: Started, deadline: float, what: str) -> None:
    if not worker.alive() or time.monotonic() > deadline:
        raise RuntimeError(f"the worker did not {what}:\n{worker.log_tail()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pool", default="prefork")
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    server = RedisServer()
    alone: list[float] = []
    beside: list[float] = []
    try:
        url = server.url(0)
        with tempfile.TemporaryDirectory(prefix="celeriac-bench-flow-") as tmp:
            for round_no in range(args.rounds):
                alone.append(drain(url, args.n, 0, args.pool, args.concurrency, Path(tmp)))
                beside.append(drain(url, args.n, args.n, args.pool, args.concurrency, Path(tmp)))
                print(
                    f"round {round_no + 1}: alone {alone[-1]:,.0f} tasks/s, "
                    f"with {args.n} parked {beside[-1]:,.0f} tasks/s",
                    flush=True,
                )
    finally:
        server.stop()
    ratio = statistics.median(beside) / statistics.median(alone)
    # each round runs both back to back, so its own ratio is the steadier figure on a
    # machine shared with other work
    paired = statistics.median(b / a for a, b in zip(alone, beside, strict=True))
    print(
        f"\nmedians over {args.rounds} round(s), N={args.n}, -P {args.pool} -c {args.concurrency}:"
    )
    print(
        f"alone {statistics.median(alone):,.0f} tasks/s; beside {args.n} parked "
        f"{statistics.median(beside):,.0f} tasks/s; ratio of medians {ratio:.0%}, "
        f"median of the rounds' ratios {paired:.0%}"
    )


if __name__ == "__main__":
    main()
