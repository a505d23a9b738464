"""The pool interface.

A pool runs the worker until it stops. In-process pools hand the shared consumer a
:class:`Slots` (where one job at a time per slot runs); prefork forks children that each run
their own consumer with one slot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ..place import Place

if TYPE_CHECKING:
    from ..runtime import WorkerRuntime


class Pool(Protocol):
    """Runs a worker's consumers until a shutdown is asked; returns the exit code."""

    name: str

    def __init__(self, runtime: WorkerRuntime) -> None: ...

    def run(self) -> int: ...


class Slots(Protocol):
    """Places where jobs run inside one consuming process."""

    capacity: int

    def free(self) -> int:
        """How many jobs could start right now."""
        ...

    def submit(self, job: Callable[[], None]) -> None: ...

    def wait_for_free(self, timeout_s: float) -> None: ...

    def join(self, timeout_s: float | None) -> bool:
        """Wait for running jobs to end; False if some were still running at the timeout."""
        ...

    def place_extras(self) -> Place:
        """What only the running slot knows about where it is (greenlet, asyncio task)."""
        ...
