"""RQ: a plain function is the task; the queue is ``default``."""

from __future__ import annotations

import time

from .counter import record


def noop(x: int) -> int:
    started = time.time()
    record(started)
    return x
