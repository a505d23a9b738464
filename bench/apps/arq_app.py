"""arq: the async task and WorkerSettings; tuned = a short poll_delay instead of 0.5 s."""

from __future__ import annotations

import time
from typing import Any

from arq.connections import RedisSettings

from .counter import RESULTS, SLOTS, TUNED, URL, record_async

TUNED_POLL_DELAY_S = 0.001


async def noop(ctx: dict[str, Any], x: int) -> int:
    started = time.time()
    await record_async(started)
    return x


class WorkerSettings:
    functions = [noop]  # noqa: RUF012 - arq reads these class attributes
    redis_settings = RedisSettings.from_dsn(URL)
    max_jobs = SLOTS
    poll_delay = TUNED_POLL_DELAY_S if TUNED else 0.5
    keep_result = 3600 if RESULTS else 0
    log_results = False
