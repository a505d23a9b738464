"""What ``--metrics-port`` costs a worker's drain speed (and that its counts are right).

    python -m bench.metrics_overhead [--n 5000] [--rounds 3] [--pool prefork] [--concurrency 2]
    python -m bench.metrics_overhead --micro   # the view's cost per task, in one process

Each round drains N no-op tasks (results off) twice, in alternating order: once with a
worker started plainly, once with ``--metrics-port`` and /metrics scraped every second as
Prometheus would. Timed from the first task started to the last finished (counted in Redis,
as the main benchmark does). Prints the medians, the share of its speed the worker keeps
with metrics on, and checks that ``celery_task_succeeded_total`` equals N.

This module is also the worker's app (``-A bench.metrics_overhead``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import redis
from prometheus_client.parser import text_string_to_metric_families

from celeriac import Celeriac, protocol

from .apps.counter import DONE, FIRST, LAST, URL, record
from .peers.celeriac import worker_command
from .procs import Started, child_env
from .redis_proc import RedisServer

app = Celeriac("metricsbench", broker=URL, backend=URL)
app.conf.task_ignore_result = True


@app.task(name="metricsbench.noop")
def noop(x: int) -> int:
    record(time.time())
    return x


def enqueue(broker_url: str, n: int) -> None:
    client = Celeriac("metricsbench-client", broker=broker_url, backend=broker_url)
    options = protocol.SendOptions(ignore_result=True)
    items = [
        (
            "celery",
            protocol.build_envelope("metricsbench.noop", protocol.new_id(), [i], {}, options),
            0,
        )
        for i in range(n)
    ]
    for start in range(0, n, 1000):
        client.broker.publish_many(items[start : start + 1000])
    client.close()


def _succeeded(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "celery_task_succeeded_total"
    )


class Scraper:
    """Scrapes /metrics every second while the worker drains, as Prometheus would."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.done = threading.Event()
        self.scrapes = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(1.0):
            try:
                _succeeded(self.port)
                self.scrapes += 1
            except OSError:
                pass  # not listening yet

    def stop(self) -> None:
        self.done.set()
        self.thread.join(5)


def drain(url: str, n: int, pool: str, slots: int, logs: Path, port: int | None) -> float:
    counter = redis.Redis.from_url(url)
    counter.flushdb()
    env = child_env({"BENCH_REDIS_URL": url, "CELERIAC_BROKER_URL": url})
    cmd = worker_command(sys.executable, pool, slots)
    cmd[cmd.index("bench.apps.celeriac_app")] = "bench.metrics_overhead"
    if port is not None:
        cmd += ["--metrics-port", str(port)]
    name = "with-metrics" if port is not None else "plain"
    enqueue(url, n)
    worker = Started(name, cmd, env, logs / f"{name}.log")
    scraper = Scraper(port) if port is not None else None
    try:
        deadline = time.monotonic() + 300
        while int(counter.get(DONE) or 0) < n:
            if not worker.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not drain {n} tasks:\n{worker.log_tail()}")
            time.sleep(0.05)
        first, last = float(counter.get(FIRST) or 0), float(counter.get(LAST) or 0)
        if port is not None:
            deadline = time.monotonic() + 10  # children flush every 0.5 s
            while _succeeded(port) < n and time.monotonic() < deadline:
                time.sleep(0.1)
            counted = _succeeded(port)
            if counted != n:
                raise RuntimeError(f"/metrics counted {counted:g} succeeded tasks, not {n}")
    finally:
        if scraper is not None:
            scraper.stop()
        worker.stop()
    return n / max(1e-9, last - first)


def micro(n: int = 20000) -> None:
    """The metrics view's own cost per task (received, started, succeeded, finished), in the
    task's thread and in the flusher, with prometheus_client's multiprocess values as a
    worker with --metrics-port uses them. Steadier than drain speeds on a busy machine."""
    import os
    import timeit
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry

    from celeriac import lifecycle
    from celeriac.metrics.families import TaskMetrics
    from celeriac.metrics.store import ENV, MultiprocessDir
    from celeriac.metrics.view import MetricsView

    os.environ[ENV] = tempfile.mkdtemp(prefix="metricsbench-")
    store = MultiprocessDir.take()  # values from now on are the worker's kind: files there
    store.owned = True  # ours to remove at the end

    ctx = SimpleNamespace(place_base={"child_index": 0})
    job = SimpleNamespace(
        message=SimpleNamespace(task="proj.add"), delivery=SimpleNamespace(queue="celery")
    )
    outcome = SimpleNamespace(runtime_s=0.001, exc=None)

    def one_task() -> None:
        for point, args in (
            (lifecycle.task_received, (ctx, job)),
            (lifecycle.task_started, (ctx, job, None)),
            (lifecycle.task_succeeded, (ctx, job, outcome)),
            (lifecycle.task_finished, (ctx, job, outcome)),
        ):
            if point.hooks:
                point.emit(*args)

    off = min(timeit.repeat(one_task, number=n, repeat=3)) / n
    view = MetricsView(TaskMetrics(CollectorRegistry()), "w@h", "prefork", flush_every_s=3600)
    view.install()
    view.flush()
    on = min(timeit.repeat(one_task, number=n, repeat=3)) / n
    view.flush()
    for _ in range(n):
        one_task()
    started = time.perf_counter()
    view.flush()
    flusher = (time.perf_counter() - started) / n
    view.uninstall()
    store.close()
    print(
        f"per task: no view {off * 1e6:.2f} us; with the view {on * 1e6:.2f} us in the task's "
        f"thread + {flusher * 1e6:.2f} us in the flusher (multiprocess values)"
    )


def main() -> None:
    from tests.support.redis_server import free_port

    if "--micro" in sys.argv:
        micro()
        return

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pool", default="prefork")
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    server = RedisServer()
    plain: list[float] = []
    metered: list[float] = []
    try:
        url = server.url(0)
        with tempfile.TemporaryDirectory(prefix="celeriac-bench-metrics-") as tmp:
            for round_no in range(args.rounds):
                order = [None, free_port()] if round_no % 2 == 0 else [free_port(), None]
                for port in order:
                    rate = drain(url, args.n, args.pool, args.concurrency, Path(tmp), port)
                    (plain if port is None else metered).append(rate)
                print(
                    f"round {round_no + 1}: plain {plain[-1]:,.0f} tasks/s, "
                    f"--metrics-port {metered[-1]:,.0f} tasks/s",
                    flush=True,
                )
    finally:
        server.stop()
    paired = statistics.median(m / p for p, m in zip(plain, metered, strict=True))
    print(
        f"\nmedians over {args.rounds} round(s), N={args.n}, -P {args.pool} -c {args.concurrency}: "
        f"plain {statistics.median(plain):,.0f} tasks/s, --metrics-port "
        f"{statistics.median(metered):,.0f} tasks/s; kept {paired:.0%} (median of the rounds)"
    )


if __name__ == "__main__":
    main()
