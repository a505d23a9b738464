"""The workloads of issue 8. Each ``run(harness, entrant, results)`` measures one library once."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..harness import Entrant, Harness
    from ..report import Results

Runner = Callable[["Harness", "Entrant", "Results"], None]

WORKLOADS = ("W1", "W2", "W2b", "W3", "W4", "W5", "Limit")


def runner(name: str) -> Runner:
    from . import drain, enqueue, limit, memory, roundtrip

    table: dict[str, Runner] = {
        "W1": enqueue.run,
        "W2": drain.run_one_slot,
        "W2b": drain.run_best2,
        "W3": roundtrip.run,
        "W4": memory.run,
        "W5": drain.run_with_results,
        "Limit": limit.run,
    }
    return table[name]
