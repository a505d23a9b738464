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
import statistics
import threading

import orjson
import redis

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


def drain_once(h: Harness, peer_name: str, mode: str, events: bool) -> float:
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
    try:
        done = h.wait_done(worker, n, h.options.drain_timeout_s)
    finally:
        h.stop(worker)
        h.flush()
    if done.partial:
        raise Failed(f"{peer_name}: only {done.count}/{n} tasks within the time cap")
    return done.rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mode", default="one", choices=("one", "best2"))
    parser.add_argument("--peers", nargs="+", default=["celeriac", "celery"])
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per drain")
    args = parser.parse_args()
    options = Options(n=args.n, rounds=args.rounds, drain_timeout_s=args.timeout)
    registry = Registry(log_dir())
    server = RedisServer()
    rates: dict[tuple[str, str], list[float]] = {}
    flow: dict[tuple[str, str], list[tuple[int, int]]] = {}
    counter = EventCounter(server.url(0))
    try:
        h = Harness(server, registry, options)
        for round_no in range(args.rounds):
            order = VARIANTS if round_no % 2 == 0 else VARIANTS[::-1]  # cancel drift
            for peer_name in args.peers:
                for variant in order:
                    counter.take()
                    rate = drain_once(h, peer_name, args.mode, variant == "with -E")
                    rates.setdefault((peer_name, variant), []).append(rate)
                    flow.setdefault((peer_name, variant), []).append(counter.take())
                    print(
                        f"round {round_no + 1}: {peer_name:9} {variant:11} {rate:9.0f} tasks/s",
                        flush=True,
                    )
    finally:
        counter.stop()
        registry.stop_all()
        server.stop()
    report(args, rates, flow)


def report(
    args: argparse.Namespace,
    rates: dict[tuple[str, str], list[float]],
    flow: dict[tuple[str, str], list[tuple[int, int]]],
) -> None:
    print(f"\nmode {args.mode}, N={args.n}, medians of {args.rounds} round(s):")
    print(
        "| worker | without -E (tasks/s) | with -E (tasks/s) | speed kept "
        "| events/task | msgs/task |"
    )
    print("|---|---|---|---|---|---|")
    for peer_name in args.peers:
        plain = statistics.median(rates[(peer_name, VARIANTS[0])])
        with_events = statistics.median(rates[(peer_name, VARIANTS[1])])
        messages, events = flow[(peer_name, VARIANTS[1])][-1]
        print(
            f"| {peer_name} | {plain:,.0f} | {with_events:,.0f} | "
            f"{with_events / plain * 100:.0f}% | {events / args.n:.2f} | {messages / args.n:.3f} |"
        )


if __name__ == "__main__":
    main()
