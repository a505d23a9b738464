"""What task events (``-E``) cost a worker's drain speed, for celeriac and for Celery.

    python -m bench.events_overhead [--n 10000] [--rounds 3] [--mode one|best2] [--peers ...]

For each round, each library and each variant (without and with ``-E``), in alternating
order: fill the queue with N no-op tasks (results off), start one worker, and time from the
first task started to the last finished (counted in Redis, as the main benchmark does).
A subscriber on ``/0.celeryev/*`` (what Flower and ``celery events`` do) is attached the
whole time and counts the event messages and events that arrive, so the figure includes the
cost of a watched cluster and shows the events really flowed.

Prints the median tasks/s of each, and for each library the share of its speed it keeps with
events on (goal for celeriac: at least 90%).
"""

from __future__ import annotations

import argparse
import base64
import itertools
import statistics
import threading
import time
from collections.abc import Iterator, Sequence

import orjson
import psutil
import redis

from .apps.counter import DONE
from .harness import Failed, Harness, NotApplicable, Options, log_dir
from .peers import load
from .procs import Registry
from .redis_proc import RedisServer

VARIANTS = ("without -E", "with -E")


class EventCounter:
    """Counts the event messages (and the events inside them) published on the broker."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.messages = 0
        self.events = 0
        self._stop = False
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        pubsub.psubscribe("/0.celeryev/*")
        self._ready.set()
        while not self._stop:
            message = pubsub.get_message(timeout=0.2)
            if message is None or message.get("type") != "pmessage":
                continue
            self.messages += 1
            try:
                body = orjson.loads(base64.b64decode(orjson.loads(message["data"])["body"]))
            except (ValueError, KeyError, TypeError):
                continue
            self.events += len(body) if isinstance(body, list) else 1
        pubsub.close()

    def take(self) -> tuple[int, int]:
        counts = self.messages, self.events
        self.messages = self.events = 0
        return counts

    def stop(self) -> None:
        self._stop = True
        self._thread.join(5)


def drain_once(h: Harness, peer_name: str, mode: str, events: bool) -> tuple[float, float]:
    """The drain rate (tasks/s) and the CPU time the worker and Redis spent per task (us)."""
    peer = load(peer_name)
    python = h.python_for(peer)
    cmd = peer.worker_cmd(python, mode, False) if python else None
    if cmd is None:
        raise NotApplicable(f"{peer_name} has no {mode} worker here")
    if events:
        cmd = [*cmd, "-E"]
    n = h.options.n
    h.flush()
    h.client(peer_name, "fill", n=n)
    worker = h.registry.spawn(
        f"worker-{peer_name}-{mode}-{'E' if events else 'plain'}",
        cmd,
        h.env(peer, False, False, mode),
    )
    pids = [worker.popen.pid, h.server.pid]
    try:
        counter = h.server.client()
        deadline = time.monotonic() + 60
        while not int(counter.get(DONE) or 0) and worker.alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        cpu_before = cpu_seconds(pids)
        done = h.wait_done(worker, n, h.options.drain_timeout_s)
        cpu_after = cpu_seconds(pids)
    finally:
        h.stop(worker)
        h.flush()
    if done.partial:
        raise Failed(f"{peer_name}: only {done.count}/{n} tasks within the time cap")
    return done.rate, (cpu_after - cpu_before) / max(1, done.count) * 1e6


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes and all their children so far."""
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                times = process.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


class DiscardingTransport:
    """Encoded event messages go nowhere (the in-process part measures the Python work)."""

    def __init__(self) -> None:
        self.messages = 0

    def publish(self, items: Sequence[tuple[str, bytes]]) -> None:
        self.messages += len(items)

    def listen(self, timeout_s: float | None) -> Iterator[bytes | None]:
        yield None


def per_task_cpu_us(n: int, events: bool) -> float:
    """Process CPU microseconds per message through ``execute.handle`` on the memory broker,
    with the worker's events view installed (its flusher's encoding included) or not."""
    from celeriac import Celeriac
    from celeriac.worker import execute
    from celeriac.worker.events import WorkerEvents
    from celeriac.worker.place import worker_place
    from celeriac.worker.runtime import WorkerRuntime

    url = f"memory://events-{next(_runs)}"
    app = Celeriac("bench-events", broker=url, backend=url)
    app.conf.task_ignore_result = True
    app.task(name="bench.inproc")(_identity)
    app.send_many("bench.inproc", [(i,) for i in range(n)])
    deliveries = app.broker.fetch(["celery"], n, 0.0)
    ctx = execute.ExecContext(app=app, nodename="n@h", place_base=worker_place("n@h", "solo"))
    view = None
    if events:
        runtime = WorkerRuntime(
            app=app, nodename="n@h", pool_name="solo", concurrency=1, queues=["celery"]
        )
        view = WorkerEvents(runtime, task_events=True)
        view.dispatcher._transport = DiscardingTransport()
        view.install()
    started = time.process_time()
    for delivery in deliveries:
        execute.handle(ctx, delivery)
    if view is not None:
        view.dispatcher.flush()
    elapsed = time.process_time() - started
    if view is not None:
        view.uninstall()
    app.close()
    return elapsed / n * 1e6


def _identity(x: int) -> int:
    return x


_runs = itertools.count()


def in_process(n: int, rounds: int) -> tuple[float, float]:
    """Best-of CPU us per task without and with events, in interleaved rounds."""
    costs: dict[bool, list[float]] = {False: [], True: []}
    for round_no in range(rounds):
        for events in (False, True) if round_no % 2 == 0 else (True, False):
            costs[events].append(per_task_cpu_us(n, events))
    plain, with_events = min(costs[False]), min(costs[True])
    print(f"in process (memory broker, execute.handle + events view), N={n}, {rounds} rounds:")
    print(f"  without events {plain:.1f} us/task, with events {with_events:.1f} us/task: ")
    print(f"  task events cost {with_events - plain:.1f} us of CPU per task", flush=True)
    return plain, with_events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mode", default="one", choices=("one", "best2"))
    parser.add_argument("--peers", nargs="+", default=["celeriac", "celery"])
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per drain")
    parser.add_argument("--inproc-n", type=int, default=5000, help="0: skip the in-process part")
    args = parser.parse_args()
    inproc = in_process(args.inproc_n, 10) if args.inproc_n else None
    options = Options(n=args.n, rounds=args.rounds, drain_timeout_s=args.timeout)
    registry = Registry(log_dir())
    server = RedisServer()
    rates: dict[tuple[str, str], list[float]] = {}
    flow: dict[tuple[str, str], list[tuple[int, int]]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    counter = EventCounter(server.url(0))
    try:
        h = Harness(server, registry, options)
        for round_no in range(args.rounds):
            order = VARIANTS if round_no % 2 == 0 else VARIANTS[::-1]  # cancel drift
            for peer_name in args.peers:
                for variant in order:
                    counter.take()
                    rate, cpu_us = drain_once(h, peer_name, args.mode, variant == "with -E")
                    rates.setdefault((peer_name, variant), []).append(rate)
                    cpu.setdefault((peer_name, variant), []).append(cpu_us)
                    flow.setdefault((peer_name, variant), []).append(counter.take())
                    print(
                        f"round {round_no + 1}: {peer_name:9} {variant:11} {rate:9.0f} tasks/s "
                        f"{cpu_us:7.1f} us CPU/task",
                        flush=True,
                    )
    finally:
        counter.stop()
        registry.stop_all()
        server.stop()
    report(args, rates, cpu, flow)
    if inproc is not None and ("celeriac", VARIANTS[0]) in rates:
        task_us = 1e6 / statistics.median(rates[("celeriac", VARIANTS[0])])
        extra_us = inproc[1] - inproc[0]
        kept = task_us / (task_us + extra_us) * 100
        print(
            f"celeriac: the events' {extra_us:.1f} us per task (in process) against a drained "
            f"task's {task_us:.0f} us keeps {kept:.0f}% of its speed"
        )


def report(
    args: argparse.Namespace,
    rates: dict[tuple[str, str], list[float]],
    cpu: dict[tuple[str, str], list[float]],
    flow: dict[tuple[str, str], list[tuple[int, int]]],
) -> None:
    print(f"\nmode {args.mode}, N={args.n}, medians of {args.rounds} round(s):")
    print(
        "| worker | tasks/s without -E | tasks/s with -E | speed kept "
        "| CPU us/task without | CPU us/task with | events/task | messages/task |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for peer_name in args.peers:
        plain = statistics.median(rates[(peer_name, VARIANTS[0])])
        with_events = statistics.median(rates[(peer_name, VARIANTS[1])])
        cpu_plain = statistics.median(cpu[(peer_name, VARIANTS[0])])
        cpu_events = statistics.median(cpu[(peer_name, VARIANTS[1])])
        messages, events = flow[(peer_name, VARIANTS[1])][-1]
        print(
            f"| {peer_name} | {plain:,.0f} | {with_events:,.0f} | "
            f"{with_events / plain * 100:.0f}% | {cpu_plain:.0f} | {cpu_events:.0f} "
            f"| {events / args.n:.2f} | {messages / args.n:.3f} |"
        )
    kept = {
        peer_name: statistics.median(cpu[(peer_name, VARIANTS[0])])
        / statistics.median(cpu[(peer_name, VARIANTS[1])])
        for peer_name in args.peers
    }
    print(
        "speed kept by CPU (worker + Redis CPU per task, without / with): "
        + ", ".join(f"{peer_name} {share * 100:.0f}%" for peer_name, share in kept.items())
    )


if __name__ == "__main__":
    main()
