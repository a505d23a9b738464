"""Progress while the pools run: a live ``rich`` bar on a terminal, plain lines otherwise.

Plain lines matter for scripts and tests: they read stderr to know that a worker is up,
instead of sleeping and hoping.
"""

from __future__ import annotations

import sys
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


class Reporter(Protocol):
    def pool_started(self, pool: str, total: int) -> None: ...

    def phase(self, pool: str, text: str) -> None: ...

    def advance(self, pool: str) -> None: ...

    def pool_done(self, pool: str, status: str) -> None: ...

    def close(self) -> None: ...


class LiveReporter:
    """One bar per pool, on stderr so that ``--json`` keeps stdout clean."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[pool]:<9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._progress.start()

    def pool_started(self, pool: str, total: int) -> None:
        self._tasks[pool] = self._progress.add_task("starting worker", total=total, pool=pool)

    def phase(self, pool: str, text: str) -> None:
        self._progress.update(self._tasks[pool], description=text)

    def advance(self, pool: str) -> None:
        self._progress.advance(self._tasks[pool])

    def pool_done(self, pool: str, status: str) -> None:
        task = self._tasks.get(pool)
        if task is None:
            task = self._tasks[pool] = self._progress.add_task("", total=1, pool=pool)
            self._progress.update(task, completed=1)
        self._progress.update(task, description=status)
        self._progress.stop_task(task)

    def close(self) -> None:
        self._progress.stop()


class PlainReporter:
    """One line per event on stderr, flushed at once."""

    def __init__(self) -> None:
        self._done: dict[str, int] = {}
        self._total: dict[str, int] = {}

    def _say(self, text: str) -> None:
        sys.stderr.write(f"demo: {text}\n")
        sys.stderr.flush()

    def pool_started(self, pool: str, total: int) -> None:
        self._done[pool] = 0
        self._total[pool] = total
        self._say(f"{pool}: starting worker")

    def phase(self, pool: str, text: str) -> None:
        self._say(f"{pool}: {text}")

    def advance(self, pool: str) -> None:
        self._done[pool] = self._done.get(pool, 0) + 1

    def pool_done(self, pool: str, status: str) -> None:
        done = self._done.get(pool, 0)
        self._say(f"{pool}: {status} ({done}/{self._total.get(pool, done)} tasks)")

    def close(self) -> None:
        return None


def make_reporter(console: Console) -> Reporter:
    if console.is_terminal:
        return LiveReporter(console)
    return PlainReporter()
