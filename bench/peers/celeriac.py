"""celeriac itself."""

from __future__ import annotations

import time

from .base import FIRST_RESULT_TIMEOUT_S, Peer, timed_loop

APP_MODULE = "bench.apps.celeriac_app"


def worker_command(python: str, pool: str, concurrency: int) -> list[str]:
    """A celeriac worker on the bench tasks, logging at WARNING (every bench command line)."""
    return [
        python,
        "-m",
        "celeriac",
        "-A",
        APP_MODULE,
        "worker",
        "-P",
        pool,
        "-c",
        str(concurrency),
        "-l",
        "warning",
        "--without-banner",
    ]


class CeleriacPeer(Peer):
    name = "celeriac"
    dist = "celeriac"
    app_module = APP_MODULE
    bulk_note = "noop.delay_many(calls): one LPUSH per 1,000 messages, pipelined"

    def worker_cmd(self, python: str, mode: str, tuned: bool) -> list[str] | None:
        # best on 2 cores: two children per core, since each task waits on Redis; -c 2
        # drains about 1.6x slower on this machine (prefork -c 3 is as good as -c 4)
        pool, slots = {"one": ("solo", 1), "best2": ("prefork", 4)}.get(mode, ("prefork", 4))
        return worker_command(python, pool, slots)

    def enqueue(self, n: int, bulk: bool) -> float | None:
        from bench.apps.celeriac_app import app, noop

        app.broker.ping()  # connect before timing
        noop.delay(-1)  # and declare the queue, as the Celery adapter warms its producer
        if not bulk:
            start = time.perf_counter()
            for i in range(n):
                noop.delay(i)
            return time.perf_counter() - start
        calls = [(i,) for i in range(n)]
        start = time.perf_counter()
        noop.delay_many(calls)
        return time.perf_counter() - start

    def roundtrip(self, n: int, budget_s: float, tuned: bool) -> list[float]:
        from bench.apps.celeriac_app import noop

        noop.delay(0).get(timeout=FIRST_RESULT_TIMEOUT_S)
        return timed_loop(lambda i: noop.delay(i).get(timeout=10), n, budget_s)


def publish_batch(app: object, task_name: str, calls: list[tuple[object, ...]]) -> None:
    """Many calls of one task by name, through the public bulk path (``app.send_many``)."""
    app.send_many(task_name, calls)  # type: ignore[attr-defined]


def envelope_size() -> int:
    from celeriac import protocol

    options = protocol.SendOptions(queue="celery", routing_key="celery", ignore_result=True)
    return len(protocol.build_envelope("bench.noop", protocol.new_id(), (1,), {}, options))


PEER = CeleriacPeer()
