"""The Redis limit: what raw redis-py + hiredis does on the same server.

LPUSH of N messages of celeriac's envelope size, one by one and pipelined; a naive consumer
that takes one message per BRPOP and runs the bench task's body (its INCR + SET) on it, and
the same BRPOP loop without the body; and a two-process BRPOP/LPUSH ping-pong. The client
actions run in ``bench.client raw ...``; the ping-pong responder is
``python -m bench.workloads.limit responder URL COUNT``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import redis

from ..harness import Entrant, Failed, Harness, NotApplicable
from ..report import Results

QUEUE, PING, PONG = "raw:queue", "raw:ping", "raw:pong"
PINGS = 2000
WARMUP = 20


def _client() -> redis.Redis:
    return redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])


def client_action(action: str, args: argparse.Namespace) -> dict[str, Any]:
    r = _client()
    r.ping()
    payload = b"x" * max(1, args.size)
    n = args.n
    if action == "lpush":
        start = time.perf_counter()
        for _ in range(n):
            r.lpush(QUEUE, payload)
        return {"seconds": time.perf_counter() - start}
    if action == "conn":
        return {"seconds": _bare_lpush(r, payload, n)}
    if action == "pipe":
        start = time.perf_counter()
        pipe = r.pipeline(transaction=False)
        for _ in range(n):
            pipe.lpush(QUEUE, payload)
        pipe.execute()
        return {"seconds": time.perf_counter() - start}
    if action in ("brpop", "naive"):
        return {"seconds": _consume(r, payload, n, with_body=action == "naive")}
    if action == "ping":
        return {"latencies": _ping(r, n, args.budget)}
    if action == "hiredis":
        from redis.utils import HIREDIS_AVAILABLE

        return {"hiredis": bool(HIREDIS_AVAILABLE)}
    raise SystemExit(f"unknown raw action {action!r}")


def _consume(r: redis.Redis, payload: bytes, n: int, with_body: bool) -> float:
    """One BRPOP per message; *with_body*: then the bench task's body (its INCR + SET), as
    the issue's naive baseline consumer does. Returns the seconds the n messages took."""
    from ..apps.counter import record

    pipe = r.pipeline(transaction=False)
    for _ in range(n):
        pipe.lpush(QUEUE, payload)
    pipe.execute()
    start = time.perf_counter()
    for _ in range(n):
        if r.brpop([QUEUE], timeout=5) is None:
            raise RuntimeError("queue ran dry")
        if with_body:
            record(time.time())
    return time.perf_counter() - start


def _bare_lpush(r: redis.Redis, payload: bytes, n: int) -> float:
    """The same LPUSH without redis-py's per-command client layer (pool, retries, events)."""
    conn: Any = r.connection_pool.get_connection()
    command = conn.pack_command("LPUSH", QUEUE, payload)
    start = time.perf_counter()
    for _ in range(n):
        conn.send_packed_command(command)
        conn.read_response()
    seconds = time.perf_counter() - start
    r.connection_pool.release(conn)
    return seconds


def _ping(r: redis.Redis, n: int, budget_s: float) -> list[float]:
    latencies = []
    deadline = time.perf_counter() + budget_s
    for i in range(WARMUP + n):
        start = time.perf_counter()
        r.lpush(PING, b"1")
        if r.brpop([PONG], timeout=5) is None:
            raise RuntimeError("the responder did not answer")
        if i >= WARMUP:
            latencies.append(time.perf_counter() - start)
        if start > deadline:
            break
    return latencies


def responder(count: int) -> None:
    """Answer each ping with a pong; stop after count or 5 s of silence."""
    r = _client()
    for _ in range(count):
        if r.brpop([PING], timeout=5) is None:
            return
        r.lpush(PONG, b"1")


def run(h: Harness, entrant: Entrant, results: Results) -> None:
    try:
        size = h.client("celeriac", "envelope_size")["bytes"]
        hiredis = h.client("raw", "hiredis")["hiredis"]
    except (NotApplicable, Failed) as exc:
        results.fail("L lpush", "raw", str(exc))
        return
    assert isinstance(size, int)
    parser = "hiredis" if hiredis else "pure-Python parser (hiredis missing)"
    n = h.options.n
    for action, key in (
        ("lpush", "L lpush"),
        ("conn", "L conn"),
        ("pipe", "L pipe"),
        ("brpop", "L brpop"),
        ("naive", "L naive"),
    ):
        h.flush()
        config = f"{n} x {size}-byte messages, redis-py + {parser}"
        try:
            answer = h.client("raw", action, n=n, extra=["--size", str(size)])
        except Failed as exc:
            results.fail(key, "raw", str(exc), config)
            continue
        seconds = answer["seconds"]
        assert isinstance(seconds, float)
        results.add(key, "raw", n / seconds, config)
    h.flush()
    pings = min(PINGS, n)
    cmd = [sys.executable, "-m", "bench.workloads.limit", "responder", str(pings + WARMUP)]
    responder_proc = h.registry.spawn("raw-responder", cmd, {"BENCH_REDIS_URL": h.url})
    try:
        answer = h.client("raw", "ping", n=pings)
    except Failed as exc:
        results.fail("L ping", "raw", str(exc))
        return
    finally:
        h.stop(responder_proc)
        h.flush()
    latencies = answer["latencies"]
    assert isinstance(latencies, list)
    config = f"{len(latencies)} round trips, two processes, redis-py + {parser}"
    results.add("L ping", "raw", statistics.median(latencies) * 1000, config)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "responder":
        responder(int(sys.argv[2]))
    else:
        raise SystemExit("usage: python -m bench.workloads.limit responder COUNT")
