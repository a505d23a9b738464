"""taskiq with taskiq-redis' RedisStreamBroker; tuned = wait_result polling every 1 ms."""

from __future__ import annotations

import asyncio
import time

from .base import FIRST_RESULT_TIMEOUT_S, Peer, timed_loop_async

TUNED_CHECK_INTERVAL_S = 0.001
DEFAULT_CHECK_INTERVAL_S = 0.2  # taskiq's default for wait_result


class TaskiqPeer(Peer):
    name = "taskiq"
    dist = "taskiq"
    app_module = "bench.apps.taskiq_app"
    tuned_for = frozenset({"W3"})
    tuned_note = "wait_result(check_interval=0.001) instead of the default 0.2 s poll"

    def worker_cmd(self, python: str, mode: str, tuned: bool) -> list[str] | None:
        shape = {
            "one": ["--workers", "1", "--max-async-tasks", "1"],
            "best2": ["--workers", "2"],
        }.get(mode, ["--workers", "4", "--max-async-tasks", "1"])
        return [
            python,
            "-m",
            "taskiq",
            "worker",
            f"{self.app_module}:broker",
            *shape,
            "--log-level",
            "WARNING",
        ]

    def enqueue(self, n: int, bulk: bool) -> float | None:
        if bulk:
            return None
        return asyncio.run(_enqueue(n))

    def roundtrip(self, n: int, budget_s: float, tuned: bool) -> list[float]:
        interval = TUNED_CHECK_INTERVAL_S if tuned else DEFAULT_CHECK_INTERVAL_S
        return asyncio.run(_roundtrip(n, budget_s, interval))


async def _enqueue(n: int) -> float:
    from bench.apps.taskiq_app import broker, noop

    await broker.startup()
    try:
        await noop.kiq(-1)
        start = time.perf_counter()
        for i in range(n):
            await noop.kiq(i)
        return time.perf_counter() - start
    finally:
        await broker.shutdown()


async def _roundtrip(n: int, budget_s: float, interval_s: float) -> list[float]:
    from bench.apps.taskiq_app import broker, noop

    await broker.startup()
    try:

        async def call(i: int, timeout_s: float = 10) -> object:
            task = await noop.kiq(i)
            result = await task.wait_result(check_interval=interval_s, timeout=timeout_s)
            return result.return_value

        await call(0, FIRST_RESULT_TIMEOUT_S)
        return await timed_loop_async(call, n, budget_s)
    finally:
        await broker.shutdown()


PEER = TaskiqPeer()
