"""arq (asyncio) in its own virtualenv: arq 0.28 needs redis-py < 6.

Defaults poll the queue and results every 0.5 s; tuned polls both every 1 ms.
"""

from __future__ import annotations

import asyncio
import time

from .base import FIRST_RESULT_TIMEOUT_S, Peer, timed_loop_async

TUNED_POLL_DELAY_S = 0.001
DEFAULT_POLL_DELAY_S = 0.5


class ArqPeer(Peer):
    name = "arq"
    dist = "arq"
    venv = "arq"
    app_module = "bench.apps.arq_app"
    tuned_for = frozenset({"W2", "W2b", "W3", "W5"})
    tuned_note = "poll_delay=0.001 for the worker and for job.result() (default 0.5 s)"

    def worker_cmd(self, python: str, mode: str, tuned: bool) -> list[str] | None:
        # one slot: max_jobs=1; multi-core: one arq process per core, max_jobs=10 (default)
        processes = {"one": "1", "best2": "2"}.get(mode, "4")
        return [python, "-m", "bench.apps.arq_worker", processes]

    def worker_note(self, mode: str, tuned: bool) -> str:
        processes = {"one": 1, "best2": 2}.get(mode, 4)
        jobs = 1 if mode in ("one", "multi4") else 10
        poll = TUNED_POLL_DELAY_S if tuned else DEFAULT_POLL_DELAY_S
        return f"arq.run_worker x{processes} process(es), max_jobs={jobs}, poll_delay={poll}"

    def slots(self, mode: str) -> int:
        return 10 if mode == "best2" else 1

    def enqueue(self, n: int, bulk: bool) -> float | None:
        if bulk:
            return None
        return asyncio.run(_enqueue(n))

    def roundtrip(self, n: int, budget_s: float, tuned: bool) -> list[float]:
        delay = TUNED_POLL_DELAY_S if tuned else DEFAULT_POLL_DELAY_S
        return asyncio.run(_roundtrip(n, budget_s, delay))


async def _enqueue(n: int) -> float:
    from arq import create_pool

    from bench.apps.arq_app import WorkerSettings

    pool = await create_pool(WorkerSettings.redis_settings)
    try:
        await pool.ping()
        start = time.perf_counter()
        for i in range(n):
            await pool.enqueue_job("noop", i)
        return time.perf_counter() - start
    finally:
        await pool.aclose()


async def _roundtrip(n: int, budget_s: float, poll_delay_s: float) -> list[float]:
    from arq import create_pool

    from bench.apps.arq_app import WorkerSettings

    pool = await create_pool(WorkerSettings.redis_settings)
    try:

        async def call(i: int, timeout_s: float = 10) -> object:
            job = await pool.enqueue_job("noop", i)
            assert job is not None
            return await job.result(timeout=timeout_s, poll_delay=poll_delay_s)

        await call(0, FIRST_RESULT_TIMEOUT_S)
        return await timed_loop_async(call, n, budget_s)
    finally:
        await pool.aclose()


PEER = ArqPeer()
