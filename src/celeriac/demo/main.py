"""The demo's entry point: pick the pools, run them, print trees and table or JSON.

Exit codes: 0 when every measured pool agrees with the seed (skipped pools do not count),
1 when a measurement contradicts it or a pool could not be measured, 130 on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

import orjson
from rich.console import Console

from ..errors import ConfigurationError
from .model import DemoReport
from .plan import ALL_POOLS

POOL_CHOICES = (*ALL_POOLS, "all")

EXIT_OK = 0
EXIT_CONTRADICTION = 1
EXIT_INTERRUPTED = 130


def pools_for(choice: str) -> list[str]:
    if choice == "all":
        return list(ALL_POOLS)
    if choice not in POOL_CHOICES:
        raise ConfigurationError(
            f"unknown pool {choice!r}; choose one of {', '.join(POOL_CHOICES)}"
        )
    return [choice]


@contextlib.contextmanager
def _hangup_and_term_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP must clean up like Ctrl-C does, not leave the workers running."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signums = [signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])]
    previous = {signum: signal.signal(signum, interrupt) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def report_json(report: DemoReport) -> str:
    data = dataclasses.asdict(report)
    data["ok"] = report.ok
    return orjson.dumps(data, option=orjson.OPT_INDENT_2, default=repr).decode()


def check_broker(url: str | None) -> None:
    """The workers are other processes: a broker that lives in one process cannot reach them."""
    if url is not None and url.split("://", 1)[0].lower() == "memory":
        raise ConfigurationError(
            "celeriac demo starts workers in their own processes, and a memory:// broker "
            "lives inside one process; use sqlite:///path, redis://host:port/db, or no "
            "--broker for a temporary SQLite file"
        )


def main(pool: str, broker_url: str | None, concurrency: int | None, as_json: bool) -> int:
    check_broker(broker_url)
    if importlib.util.find_spec("psutil") is None:
        raise ConfigurationError(
            "celeriac demo looks at the worker's processes with psutil, which is not "
            "installed: pip install psutil"
        )
    from .progress import make_reporter
    from .render import render
    from .runner import DemoOptions, run_demo

    err = Console(stderr=True)
    out = Console() if Console().is_terminal else Console(width=140)
    try:
        with _hangup_and_term_as_interrupt():
            options = DemoOptions(pools_for(pool), broker_url, concurrency)
            report = run_demo(options, make_reporter(err))
    except KeyboardInterrupt:  # before any worker started: nothing to clean up
        err.print("interrupted")
        return EXIT_INTERRUPTED
    if as_json:
        sys.stdout.write(report_json(report) + "\n")
        sys.stdout.flush()
    else:
        render(report, out)
    if report.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if report.ok else EXIT_CONTRADICTION
