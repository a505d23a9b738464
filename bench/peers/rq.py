"""RQ: the default Worker forks a work horse per job; tuned = SimpleWorker (no fork)."""

from __future__ import annotations

import time

from .base import FIRST_RESULT_TIMEOUT_S, Peer, timed_loop

QUEUE = "default"


class RqPeer(Peer):
    name = "rq"
    dist = "rq"
    app_module = "bench.apps.rq_app"
    tuned_for = frozenset({"W2", "W2b", "W3", "W5"})
    tuned_note = "--worker-class rq.worker.SimpleWorker (runs jobs in the worker, no fork per job)"
    bulk_note = "Queue.enqueue_many (one pipeline)"

    def worker_cmd(self, python: str, mode: str, tuned: bool) -> list[str] | None:
        common = ["-q"]
        if tuned:
            common += ["--worker-class", "rq.worker.SimpleWorker"]
        if mode == "one":
            return [python, "-m", "rq.cli", "worker", *common, QUEUE]
        processes = "2" if mode == "best2" else "4"
        return [python, "-m", "rq.cli", "worker-pool", "-n", processes, *common, QUEUE]

    def worker_env(self, url: str) -> dict[str, str]:
        return {"RQ_REDIS_URL": url}

    def enqueue(self, n: int, bulk: bool) -> float | None:
        from redis import Redis
        from rq import Queue

        from bench.apps.counter import RESULTS, URL
        from bench.apps.rq_app import noop

        queue = Queue(QUEUE, connection=Redis.from_url(URL))
        queue.connection.ping()
        ttl = 500 if RESULTS else 0
        start = time.perf_counter()
        if bulk:
            queue.enqueue_many([Queue.prepare_data(noop, (i,), result_ttl=ttl) for i in range(n)])
        else:
            for i in range(n):
                queue.enqueue(noop, i, result_ttl=ttl)
        return time.perf_counter() - start

    def roundtrip(self, n: int, budget_s: float, tuned: bool) -> list[float]:
        from redis import Redis
        from rq import Queue

        from bench.apps.counter import URL
        from bench.apps.rq_app import noop

        queue = Queue(QUEUE, connection=Redis.from_url(URL))

        def call(i: int, timeout_s: float = 10) -> object:
            result = queue.enqueue(noop, i).latest_result(timeout=int(timeout_s))
            if result is None:
                raise TimeoutError("no RQ result in time")
            return result.return_value

        call(0, FIRST_RESULT_TIMEOUT_S)
        return timed_loop(call, n, budget_s)


PEER = RqPeer()
