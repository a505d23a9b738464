"""What every library adapter provides, so the workloads never name a library.

Orchestrator side (runs in the project's environment): ``worker_cmd`` and the notes.
Client side (runs in the library's own interpreter, see bench/client.py): ``enqueue``
and ``roundtrip``. Library imports stay inside the client-side methods, so this module
and the adapters import with the standard library alone.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

# Worker configurations the workloads ask for:
#   one    one process, one task at a time (Celery --pool=solo)
#   best2  the library's best configuration for 2 cores
#   multi4 four task processes (Celery prefork -c 4), for the memory workload
MODES = ("one", "best2", "multi4")

FIRST_RESULT_TIMEOUT_S = 30.0


class Peer:
    name = ""
    dist = ""  # the distribution whose version is reported
    venv: str | None = None  # own environment .venv-bench-<venv>, for clashing pins
    tuned_for: frozenset[str] = frozenset()  # workloads also run with tuned settings
    tuned_note = ""
    bulk_note = "no bulk API"
    app_module = ""

    # orchestrator side
    def worker_cmd(self, python: str, mode: str, tuned: bool) -> list[str] | None:
        """The worker's command line, or None when the library has no such configuration."""
        raise NotImplementedError

    def worker_env(self, url: str) -> dict[str, str]:
        """Environment the worker needs beyond BENCH_* (e.g. a URL the CLI reads)."""
        return {}

    def worker_note(self, mode: str, tuned: bool) -> str:
        cmd = self.worker_cmd("python", mode, tuned)
        return " ".join(cmd[1:]) if cmd else "n/a"

    def slots(self, mode: str) -> int:
        """Concurrency the app module is told (BENCH_SLOTS), for libraries configured in code."""
        return {"one": 1, "best2": 2, "multi4": 4}[mode]

    # client side
    def enqueue(self, n: int, bulk: bool) -> float | None:
        """Send n no-op tasks; seconds taken, or None when there is no bulk path."""
        raise NotImplementedError

    def roundtrip(self, n: int, budget_s: float, tuned: bool) -> list[float]:
        """Sequential send-and-wait-for-result; one latency in seconds per call."""
        raise NotImplementedError


def timed_loop(
    call: Callable[[int], object], n: int, budget_s: float, warmup: int = 5
) -> list[float]:
    """Latencies of up to n calls, stopping early once budget_s is spent."""
    for i in range(warmup):
        call(-1 - i)
    latencies: list[float] = []
    deadline = time.perf_counter() + budget_s
    for i in range(n):
        start = time.perf_counter()
        call(i)
        latencies.append(time.perf_counter() - start)
        if start > deadline:
            break
    return latencies


async def timed_loop_async(
    call: Callable[[int], Awaitable[object]], n: int, budget_s: float, warmup: int = 5
) -> list[float]:
    """``timed_loop`` for an asyncio client."""
    for i in range(warmup):
        await call(-1 - i)
    latencies: list[float] = []
    deadline = time.perf_counter() + budget_s
    for i in range(n):
        start = time.perf_counter()
        await call(i)
        latencies.append(time.perf_counter() - start)
        if start > deadline:
            break
    return latencies
