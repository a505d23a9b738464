"""The client side of a measurement, run in the library's own interpreter.

``python -m bench.client PEER ACTION [--n N] [--bulk] [--tuned] [--budget S]``
prints one JSON line: the measured figures. The runner starts it as a subprocess so each
library runs in its own environment (arq's has an older redis-py) and a fresh process.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import metadata
from typing import Any


def run(peer_name: str, action: str, args: argparse.Namespace) -> dict[str, Any]:
    if peer_name == "raw":
        from bench.workloads import limit

        return limit.client_action(action, args)
    from bench.peers import load

    peer = load(peer_name)
    if action == "version":
        return {"version": metadata.version(peer.dist), "python": sys.version.split()[0]}
    if action == "enqueue":
        return {"seconds": peer.enqueue(args.n, args.bulk)}
    if action == "fill":  # load the queue as fast as the library allows
        seconds = peer.enqueue(args.n, True)
        if seconds is None:
            seconds = peer.enqueue(args.n, False)
        return {"seconds": seconds}
    if action == "roundtrip":
        return {"latencies": peer.roundtrip(args.n, args.budget, args.tuned)}
    if action == "fill_task":  # celeriac only: N calls of --task with --arg (bench.pools)
        from bench.apps.celeriac_app import app
        from bench.peers.celeriac import publish_batch

        app.broker.ping()
        publish_batch(app, args.task, [(args.arg,) for _ in range(args.n)])
        return {"seconds": 0.0}
    if action == "envelope_size":
        from bench.peers.celeriac import envelope_size

        return {"bytes": envelope_size()}
    raise SystemExit(f"unknown action {action!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("peer")
    parser.add_argument("action")
    parser.add_argument("--n", type=int, default=1)
    parser.add_argument("--bulk", action="store_true")
    parser.add_argument("--tuned", action="store_true")
    parser.add_argument("--budget", type=float, default=30.0)
    parser.add_argument("--size", type=int, default=0)
    parser.add_argument("--task", default="bench.noop")
    parser.add_argument("--arg", type=float, default=0)
    args = parser.parse_args(argv)
    result = run(args.peer, args.action, args)
    sys.stdout.write("BENCH-RESULT " + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
