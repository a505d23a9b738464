"""Celery 5 on its Redis transport (kombu), workers without gossip/mingle/heartbeat."""

from __future__ import annotations

import time

from .base import FIRST_RESULT_TIMEOUT_S, Peer, timed_loop


class CeleryPeer(Peer):
    name = "celery"
    dist = "celery"
    app_module = "bench.apps.celery_app"
    bulk_note = "group(...).apply_async() (one producer, one message per task)"
    tuned_for = frozenset({"W2b"})
    tuned_note = "--pool=prefork -c 4 (two children per core, celeriac's best shape)"

    def worker_cmd(self, python: str, mode: str, tuned: bool) -> list[str] | None:
        best2 = ["--pool=prefork", "-c", "4" if tuned else "2"]
        pool = {"one": ["--pool=solo", "-c", "1"], "best2": best2}.get(
            mode, ["--pool=prefork", "-c", "4"]
        )
        return [
            python,
            "-m",
            "celery",
            "-A",
            self.app_module,
            "worker",
            *pool,
            "-l",
            "warning",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]

    def enqueue(self, n: int, bulk: bool) -> float | None:
        from celery import group

        from bench.apps.celery_app import app, noop

        with app.connection_for_write() as conn:
            conn.ensure_connection()
        noop.delay(-1)  # warm the producer pool
        if not bulk:
            start = time.perf_counter()
            for i in range(n):
                noop.delay(i)
            return time.perf_counter() - start
        start = time.perf_counter()
        group(noop.s(i) for i in range(n)).apply_async()
        return time.perf_counter() - start

    def roundtrip(self, n: int, budget_s: float, tuned: bool) -> list[float]:
        from bench.apps.celery_app import noop

        noop.delay(0).get(timeout=FIRST_RESULT_TIMEOUT_S)
        return timed_loop(lambda i: noop.delay(i).get(timeout=10), n, budget_s)


PEER = CeleryPeer()
