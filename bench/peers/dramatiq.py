"""Dramatiq on its RedisBroker, default middleware; Results middleware for round trips."""

from __future__ import annotations

import time

from .base import FIRST_RESULT_TIMEOUT_S, Peer, timed_loop


class DramatiqPeer(Peer):
    name = "dramatiq"
    dist = "dramatiq"
    app_module = "bench.apps.dramatiq_app"
    bulk_note = "no bulk API (group.run() sends one message at a time)"

    def worker_cmd(self, python: str, mode: str, tuned: bool) -> list[str] | None:
        shape = {"one": ["-p", "1", "-t", "1"], "best2": ["-p", "2"]}.get(
            mode, ["-p", "4", "-t", "1"]
        )
        return [python, "-m", "dramatiq", self.app_module, *shape]

    def enqueue(self, n: int, bulk: bool) -> float | None:
        if bulk:
            return None
        from bench.apps.dramatiq_app import broker, noop

        broker.client.ping()
        start = time.perf_counter()
        for i in range(n):
            noop.send(i)
        return time.perf_counter() - start

    def roundtrip(self, n: int, budget_s: float, tuned: bool) -> list[float]:
        from bench.apps.dramatiq_app import noop

        first_ms = int(FIRST_RESULT_TIMEOUT_S * 1000)
        noop.send(0).get_result(block=True, timeout=first_ms)
        return timed_loop(
            lambda i: noop.send(i).get_result(block=True, timeout=10_000), n, budget_s
        )


PEER = DramatiqPeer()
