"""A chord of 1,000 no-op tasks, celeriac vs Celery, on one freshly started redis-server.

    .venv/bin/python -m bench.chord [--size 1000] [--pool prefork] [--concurrency 2]

Each side gets one worker with the same settings (default ``-P prefork -c 2``) and its own
client; the time is from sending the chord to the body's result, after a small warm-up
chord. Afterwards every ``celery-taskset-meta-*`` key is listed (SCAN): the chord counters
(``.j .t .s .d``) must be gone; Celery 5.7's short-lived ``.c`` = ``done`` marker may stay.

This module is also the worker app: ``CHORD_BENCH_IMPL`` picks celeriac or Celery.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
IMPL = os.environ.get("CHORD_BENCH_IMPL", "celeriac")
URL = os.environ.get("CHORD_BENCH_URL", "redis://127.0.0.1:6379/0")
COUNTER_SUFFIXES = (".j", ".t", ".s", ".d")


def make_app(impl: str, url: str) -> Any:
    """The app with the two bench tasks, on celeriac or on Celery."""
    if impl == "celery":
        from celery import Celery

        app: Any = Celery("chord_bench", broker=url, backend=url, set_as_current=False)
        app.conf.worker_hijack_root_logger = False
        task = app.task
    else:
        from celeriac import Celery as Celeriac

        app = Celeriac("chord_bench", broker=url, backend=url)
        task = app.task

    @task(name="chord_bench.noop")
    def noop(i: int) -> int:
        return i

    @task(name="chord_bench.count")
    def count(values: list[int]) -> int:
        return len(values)

    return app


app = make_app(IMPL, URL)


def start_worker(impl: str, url: str, pool: str, concurrency: int, log: Path) -> Any:
    launcher = "celery" if impl == "celery" else "celeriac"
    cmd = [sys.executable, "-m", launcher, "-A", "bench.chord", "worker", "-P", pool]
    cmd += ["-c", str(concurrency), "-l", "info"]
    if impl == "celery":
        cmd += ["--without-mingle", "--without-gossip", "--without-heartbeat"]
    env = dict(os.environ, CHORD_BENCH_IMPL=impl, CHORD_BENCH_URL=url, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    deadline = time.monotonic() + 60
    while "ready." not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_worker(process)
            raise RuntimeError(f"{impl} worker did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.05)
    return process


def stop_worker(process: Any) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def run_chord(impl: str, url: str, size: int) -> float:
    """Seconds from sending a chord of *size* no-ops to reading its body's result."""
    client = make_app(impl, url)
    try:
        if impl == "celery":
            from celery import chord
        else:
            from celeriac import chord
        noop, count = client.tasks["chord_bench.noop"], client.tasks["chord_bench.count"]
        warm = chord(noop.s(i) for i in range(10))(count.s())
        assert warm.get(timeout=60) == 10
        started = time.perf_counter()
        result = chord(noop.s(i) for i in range(size))(count.s())
        value = result.get(timeout=600)
        elapsed = time.perf_counter() - started
        if value != size:
            raise RuntimeError(f"{impl}: chord body saw {value} results, expected {size}")
        return elapsed
    finally:
        client.close()


def chord_keys(server: Any) -> dict[str, str]:
    client = server.client()
    try:
        found = {}
        for key in client.scan_iter(match="celery-taskset-meta-*", count=1000):
            name = key.decode()
            value = client.get(key) if client.type(key) == b"string" else None
            found[name] = value.decode() if value is not None else client.type(key).decode()
        return found
    finally:
        client.close()


def measure(impl: str, server: Any, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    server.flush()
    url = server.url(0)
    worker = start_worker(impl, url, args.pool, args.concurrency, log_dir / f"{impl}.log")
    try:
        seconds = run_chord(impl, url, args.size)
    finally:
        stop_worker(worker)
    keys = chord_keys(server)
    counters = sorted(key for key in keys if key.endswith(COUNTER_SUFFIXES))
    markers = sorted(key for key, value in keys.items() if key.endswith(".c") and value == "done")
    others = sorted(set(keys) - set(counters) - set(markers))
    return {"seconds": seconds, "counters": counters, "done_markers": markers, "others": others}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--pool", default="prefork")
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args(argv)
    from bench.redis_proc import RedisServer

    log_dir = Path(tempfile.mkdtemp(prefix="chord-bench-"))
    with RedisServer() as server:
        print(
            f"chord of {args.size} no-op tasks; redis {server.version()} on port {server.port}; "
            f"one worker each: -P {args.pool} -c {args.concurrency}; logs in {log_dir}"
        )
        outcome = {impl: measure(impl, server, args, log_dir) for impl in ("celeriac", "celery")}
    failed = False
    for impl, found in outcome.items():
        left = found["counters"] + found["others"]
        print(
            f"  {impl:9s} {found['seconds']:7.2f} s   chord keys left: "
            f"{', '.join(left) if left else 'none'}"
            f" ({len(found['done_markers'])} '.c = done' marker(s), expiring in <= 300 s)"
        )
        failed = failed or bool(left)
    ratio = outcome["celery"]["seconds"] / outcome["celeriac"]["seconds"]
    print(f"  celeriac is {ratio:.2f}x Celery's speed (Celery time / celeriac time)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
