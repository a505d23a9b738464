"""Where the processes of one worker keep their counts: prometheus_client's multiprocess mode.

Each process that counts writes its own small memory-mapped file in a directory private to
the worker (``PROMETHEUS_MULTIPROC_DIR``); the process that serves ``/metrics`` reads them
all at each scrape and adds them up, so a prefork child's counts survive its exit and
recycling. The directory is made at start-up, before any fork, and removed when the worker
stops; one left by a worker that was killed is removed by the next worker on the machine.
A directory the user set in ``PROMETHEUS_MULTIPROC_DIR`` is used as it is, and kept.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import struct
import tempfile
from typing import Any

from ..pids import pid_alive

ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "celeriac-metrics-"
_LIVE_FILE = re.compile(r"gauge_live\w*_(\d+)\.db$")


class MultiprocessDir:
    def __init__(self, path: str, owned: bool) -> None:
        self.path = path
        self.owned = owned
        self.owner_pid = os.getpid()

    @classmethod
    def take(cls) -> MultiprocessDir:
        """Use the user's directory, or make a private one; values made from now on (in
        this process and every child forked later) go to files there."""
        existing = os.environ.get(ENV)
        if existing:
            os.makedirs(existing, exist_ok=True)
            store = cls(existing, owned=False)
        else:
            remove_stale_dirs()
            path = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")
            os.environ[ENV] = path
            store = cls(path, owned=True)
        from prometheus_client import values

        # prometheus_client chose its value class when first imported, maybe before now
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
        return store

    def forget_dead_processes(self) -> None:
        """Drop the live gauges of processes that are gone (a child killed mid-task would
        otherwise count as running that task for ever). Their counters stay: they count."""
        from prometheus_client import multiprocess

        pids = set()
        for path in glob.glob(os.path.join(self.path, "gauge_live*_*.db")):
            found = _LIVE_FILE.search(os.path.basename(path))
            if found:
                pids.add(int(found.group(1)))
        for pid in pids:
            if not pid_alive(pid):
                multiprocess.mark_process_dead(pid, self.path)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        """Remove the private directory (only the process that made it does)."""
        if not self.owned or os.getpid() != self.owner_pid:
            return
        shutil.rmtree(self.path, ignore_errors=True)
        if os.environ.get(ENV) == self.path:
            del os.environ[ENV]


class FilesCollector:
    """prometheus_client's multiprocess collector, minus one race: a process that has just
    made its file (still empty, or removed as its process died) is left out of this scrape
    instead of failing it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def collect(self) -> Any:
        from prometheus_client.multiprocess import MultiProcessCollector

        for _ in range(3):
            files = [p for p in glob.glob(os.path.join(self.path, "*.db")) if _readable(p)]
            try:
                return MultiProcessCollector.merge(files, accumulate=True)  # type: ignore[no-untyped-call]
            except (struct.error, OSError, ValueError):
                continue  # a file changed under the read: take the listing again
        return []


def _readable(path: str) -> bool:
    try:
        return os.path.getsize(path) >= 8
    except OSError:
        return False


def remove_stale_dirs() -> int:
    """Remove private directories whose worker no longer exists (it was SIGKILLed)."""
    removed = 0
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{PREFIX}*-*")):
        pid_text = os.path.basename(path)[len(PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit() or pid_alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            if os.stat(path).st_uid == os.getuid():
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
    return removed
