"""Huey: RedisHuey with its consumer; tuned = notify_result (result waits BLPOP, not poll)."""

from __future__ import annotations

import time

from .base import FIRST_RESULT_TIMEOUT_S, Peer, timed_loop


class HueyPeer(Peer):
    name = "huey"
    dist = "huey"
    app_module = "bench.apps.huey_app"
    tuned_for = frozenset({"W3"})
    tuned_note = "RedisHuey(notify_result=True): get() waits with BLPOP instead of polling"
    bulk_note = "no bulk API (task.map() enqueues one at a time)"

    def worker_cmd(self, python: str, mode: str, tuned: bool) -> list[str] | None:
        shape = {"one": ["-w", "1", "-k", "thread"], "best2": ["-w", "2", "-k", "process"]}.get(
            mode, ["-w", "4", "-k", "process"]
        )
        return [python, "-m", "huey.bin.huey_consumer", f"{self.app_module}.huey", *shape, "-q"]

    def enqueue(self, n: int, bulk: bool) -> float | None:
        if bulk:
            return None
        from bench.apps.huey_app import huey, noop

        huey.storage.conn.ping()
        start = time.perf_counter()
        for i in range(n):
            noop(i)
        return time.perf_counter() - start

    def roundtrip(self, n: int, budget_s: float, tuned: bool) -> list[float]:
        from bench.apps.huey_app import noop

        noop(0).get(blocking=True, timeout=FIRST_RESULT_TIMEOUT_S)
        return timed_loop(lambda i: noop(i).get(blocking=True, timeout=10), n, budget_s)


PEER = HueyPeer()
