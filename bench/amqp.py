"""celeriac and Celery side by side on one RabbitMQ: enqueue, drain and round trip.

``python -m bench.amqp [--n 2000] [--roundtrips 200] [--rounds 1]`` starts a private
RabbitMQ node and a redis-server (results and the done counter), then for each round runs,
for celeriac then Celery:

- enqueue: N ``send_task`` calls from one client, like for like: both with publisher
  confirms (celeriac's default, Celery's ``confirm_publish=True``) and both without
  (celeriac's ``confirm_publish=False``, Celery's default), the two sides taking turns
  in blocks of N/4 sends; and celeriac's ``send_many``;
- drain: N tasks queued before a prefork worker (-c 2) starts, timed from the first task
  started to the last finished (each task does one Redis INCR, see bench/apps/counter.py);
- round trip: ``delay().get()`` one after another against a running worker (median ms).

Prints the medians and the celeriac/Celery ratios. Every process is stopped by PID.
``python -m bench.amqp --kill-loop 1500 --kills 20`` runs the kill loop on RabbitMQ instead.
This module is also the worker's app module (``-A bench.amqp:celeriac_app``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
DONE, FIRST, LAST = "bench:done", "bench:first", "bench:last"
COUNTER_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
BROKER_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
BACKEND_URL = os.environ.get("BENCH_BACKEND_URL", COUNTER_URL)


def _record(started: float) -> None:
    client = _counter()
    pipe = client.pipeline(transaction=False)
    pipe.incr(DONE)
    pipe.set(LAST, repr(time.time()))
    count, _ = pipe.execute()
    if count == 1:
        client.set(FIRST, repr(started))


_clients: dict[int, redis.Redis] = {}


def _counter() -> redis.Redis:
    client = _clients.get(os.getpid())
    if client is None:  # one per process: a forked child never shares its parent's socket
        client = _clients[os.getpid()] = redis.Redis.from_url(COUNTER_URL)
    return client


def _define(app: Any) -> None:
    @app.task(name="bench.count", ignore_result=True)
    def count(x: int) -> int:
        _record(time.time())
        return x

    @app.task(name="bench.echo")
    def echo(x: int) -> int:
        return x


def _apps(confirm_publish: bool | None = None) -> tuple[Any, Any]:
    """(celeriac app, Celery app); *confirm_publish* set on both, or each one's default."""
    import celery

    import celeriac

    ours = celeriac.Celery("bench_amqp", broker=BROKER_URL, backend=BACKEND_URL)
    theirs = celery.Celery("bench_amqp", broker=BROKER_URL, backend=BACKEND_URL)
    for app in (ours, theirs):
        app.conf.worker_prefetch_multiplier = 4
        app.conf.worker_hijack_root_logger = False
        if confirm_publish is not None:
            app.conf.broker_transport_options = {"confirm_publish": confirm_publish}
        _define(app)
    return ours, theirs


celeriac_app, celery_app = _apps() if os.environ.get("BENCH_AMQP_URL") else (None, None)


# the runner
def _start_worker(kind: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    if kind == "celeriac":
        cmd = [sys.executable, "-m", "celeriac", "-A", "bench.amqp:celeriac_app", "worker"]
    else:
        cmd = [sys.executable, "-m", "celery", "-A", "bench.amqp:celery_app", "worker"]
        cmd += ["--without-mingle", "--without-gossip", "--without-heartbeat"]
    cmd += ["-P", "prefork", "-c", "2", "-l", "info"]
    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while b"ready." not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            raise RuntimeError(f"{kind} worker did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)  # polling the worker's log for its start line
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    import psutil

    try:
        kids = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        kids = []
    if process.poll() is None:
        process.kill()
        process.wait(20)
    for kid in kids:
        try:
            kid.kill()
        except psutil.NoSuchProcess:
            continue


def _wait_done(n: int, timeout_s: float) -> float:
    client = _counter()
    deadline = time.monotonic() + timeout_s
    while int(client.get(DONE) or 0) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {int(client.get(DONE) or 0)} of {n} tasks done in time")
        time.sleep(0.02)  # polling the counter the tasks write
    first, last = float(client.get(FIRST) or 0), float(client.get(LAST) or 0)
    return n / (last - first) if last > first else float("nan")


def _purge(app: Any) -> None:
    _counter().delete(DONE, FIRST, LAST)
    try:
        with app.connection_for_write() as conn:  # Celery
            conn.default_channel.queue_purge("celery")
    except AttributeError:
        app.broker.purge(["celery"])  # celeriac


def _enqueue(app: Any, n: int) -> float:
    """tasks/s of *n* ``send_task`` calls one by one (the queue is left holding them)."""
    _purge(app)
    app.send_task("bench.count", (-1,))  # connected and declared before the clock starts
    _purge(app)
    started = time.perf_counter()
    for i in range(n):
        app.send_task("bench.count", (i,))
    return n / (time.perf_counter() - started)


def run_round(kind: str, app: Any, env: dict[str, str], n: int, trips: int) -> dict[str, float]:
    """Drain *n* queued tasks and time *trips* round trips, on one side's default app."""
    _enqueue(app, n)
    log = Path(tempfile.mkstemp(prefix=f"bench-amqp-{kind}-", suffix=".log")[1])
    worker = _start_worker(kind, env, log)
    try:
        drain = _wait_done(n, timeout_s=300)
        times = []
        for i in range(trips):
            t = time.perf_counter()
            app.send_task("bench.echo", (i,)).get(timeout=30)
            times.append((time.perf_counter() - t) * 1000)
    finally:
        _stop(worker)
        log.unlink(missing_ok=True)
    return {"drain": drain, "roundtrip_ms": statistics.median(times)}


BLOCKS = 4  # enqueue: the two sides take turns, so a change of machine load hits both


def _seconds_enqueueing(app: Any, count: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        app.send_task("bench.count", (i,))
    return time.perf_counter() - started


def enqueue_variants(apps: dict[str, tuple[Any, Any]], n: int) -> dict[str, float]:
    """One-by-one enqueue on both sides with confirms on and off, in turns of n/BLOCKS
    sends, and celeriac's bulk path (``send_many``: one confirm wait per batch); tasks/s,
    keys ``<kind>_<confirmed|unconfirmed>`` and ``celeriac_bulk``."""
    found: dict[str, float] = {}
    block = max(1, n // BLOCKS)
    for mode, (ours, theirs) in apps.items():
        for app in (ours, theirs):
            _enqueue(app, 1)  # connected and declared before the clock starts
        spent = {"celeriac": 0.0, "celery": 0.0}
        for turn in range(BLOCKS):
            order = [("celeriac", ours), ("celery", theirs)]
            for kind, app in order if turn % 2 == 0 else order[::-1]:
                spent[kind] += _seconds_enqueueing(app, block)
        for kind, seconds in spent.items():
            found[f"{kind}_{mode}"] = block * BLOCKS / seconds
        _purge(ours)
    ours = apps["confirmed"][0]
    _purge(ours)
    started = time.perf_counter()
    ours.send_many("bench.count", [(i,) for i in range(n)])
    found["celeriac_bulk"] = n / (time.perf_counter() - started)
    _purge(ours)
    return found


def kill_loop(tasks: int, kills: int) -> int:
    """The issue's kill loop on RabbitMQ: *tasks* acks_late tasks on a prefork -c 2 worker,
    at least *kills* SIGKILLs of a child or the whole worker; prints lost and duplicates."""
    from tests.support.kill_loop import KillLoop, KillLoopConfig, seed_from_env
    from tests.support.rabbitmq import start_rabbitmq
    from tests.support.redis_server import start_redis

    node = start_rabbitmq()
    server = start_redis()
    try:
        config = KillLoopConfig(
            broker_url=node.url,
            backend_url=server.url(1),
            record_url=server.url(2),
            tasks=tasks,
            min_kills=kills,
            seed=seed_from_env(),
            deadline_s=900.0,
        )
        report = KillLoop(config).run()
        print(f"[amqp] {report.summary()}")
        return 1 if report.lost else 0
    finally:
        server.stop()
        node.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.amqp", description=__doc__)
    parser.add_argument("--n", type=int, default=2000, help="tasks for enqueue and drain")
    parser.add_argument("--roundtrips", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--kill-loop", type=int, default=0, metavar="TASKS", help="run the kill loop instead"
    )
    parser.add_argument("--kills", type=int, default=20, help="kill loop: at least this many")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    if args.kill_loop:
        return kill_loop(args.kill_loop, args.kills)
    from tests.support.rabbitmq import start_rabbitmq
    from tests.support.redis_server import start_redis

    node = start_rabbitmq()
    server = start_redis()
    try:
        os.environ["BENCH_AMQP_URL"] = node.url
        os.environ["BENCH_REDIS_URL"] = server.url(0)
        os.environ["BENCH_BACKEND_URL"] = server.url(1)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "src")]))
        global COUNTER_URL, BROKER_URL, BACKEND_URL
        COUNTER_URL, BROKER_URL, BACKEND_URL = server.url(0), node.url, server.url(1)
        ours, theirs = _apps()  # each side's defaults: drain and round trip
        variants = {"confirmed": _apps(True), "unconfirmed": _apps(False)}
        results: dict[str, list[dict[str, float]]] = {"celeriac": [], "celery": [], "extra": []}
        for _ in range(args.rounds):
            results["extra"].append(enqueue_variants(variants, args.n))
            for kind, app in (("celeriac", ours), ("celery", theirs)):
                results[kind].append(run_round(kind, app, env, args.n, args.roundtrips))
        _report(results, args)
        for app in (ours, theirs, *variants["confirmed"], *variants["unconfirmed"]):
            app.close()
    finally:
        server.stop()
        node.stop()
    return 0


def _report(results: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    def median(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in results[kind])

    def row(label: str, a: float, b: float, ratio: float, unit: str) -> None:
        print(f"{label:<34}{a:>10.1f}{b:>10.1f}  {ratio:>6.2f}x  {unit}")

    print(f"RabbitMQ, n={args.n}, round trips={args.roundtrips}, rounds={args.rounds}")
    print(f"{'workload':<34}{'celeriac':>10}{'Celery':>10}  {'ratio':>7}  unit")
    for mode in ("confirmed", "unconfirmed"):
        a, b = median("extra", f"celeriac_{mode}"), median("extra", f"celery_{mode}")
        row(f"enqueue one by one, {mode}", a, b, a / b, "tasks/s")
    bulk, celery_default = median("extra", "celeriac_bulk"), median("extra", "celery_unconfirmed")
    row("enqueue send_many (confirmed)", bulk, celery_default, bulk / celery_default, "tasks/s")
    a, b = median("celeriac", "drain"), median("celery", "drain")
    row("drain", a, b, a / b, "tasks/s")
    a, b = median("celeriac", "roundtrip_ms"), median("celery", "roundtrip_ms")
    row("round trip delay().get()", a, b, b / a, "ms (median; ratio Celery/celeriac)")
    print("send_many is compared with Celery's default (unconfirmed) one-by-one enqueue")


if __name__ == "__main__":
    raise SystemExit(main())
