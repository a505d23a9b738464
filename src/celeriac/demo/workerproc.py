"""One real worker subprocess for the demo, started and always stopped by PID.

The worker runs in a session of its own, so a Ctrl-C in the terminal reaches only the demo,
which then stops the worker itself (warm shutdown, then SIGKILL) and every process the
worker left behind. The processes to stop are known three ways, because a prefork child can
be forked after any snapshot: the snapshots taken while the worker ran, the worker's
descendants at stop time, and every process that carries this run's token in its
environment (children inherit it; nobody else has it).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence

import psutil

from .seed_app import QUEUES

logger = logging.getLogger(__name__)

TOKEN_VAR = "CELERIAC_DEMO_RUN"
READY_MARK = " ready."


def worker_command(pool: str, concurrency: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celeriac",
        "-A",
        "celeriac.demo.seed_app",
        "worker",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        f"--queues={','.join(QUEUES)}",
        f"--hostname=demo-{pool}@%h",
        "--loglevel=info",
        "--without-banner",
    ]


class DemoWorker:
    """A ``celeriac worker`` subprocess whose log is read by a thread and kept short."""

    def __init__(self, pool: str, concurrency: int, env: dict[str, str], token: str) -> None:
        self.pool = pool
        self.concurrency = concurrency
        self.token = token
        self.ready = threading.Event()
        self.exited = threading.Event()
        self._log: collections.deque[str] = collections.deque(maxlen=40)
        self._seen: dict[int, psutil.Process] = {}
        self.process = subprocess.Popen(
            worker_command(pool, concurrency),
            env={**env, TOKEN_VAR: token, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._remember(self.process.pid)
        self._reader = threading.Thread(target=self._read_log, name=f"demo-log-{pool}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read_log(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip()
            self._log.append(line)
            if READY_MARK in line:
                self.ready.set()
        stream.close()
        self.process.wait()
        self.exited.set()
        self.ready.set()  # wake whoever waits for readiness: it will see the exit

    def log_tail(self, lines: int = 12) -> list[str]:
        return list(self._log)[-lines:]

    def wait_ready(self, timeout_s: float) -> bool:
        """True once the worker logged that it is ready; False if it exited or timed out."""
        self.ready.wait(timeout_s)
        return self.ready.is_set() and self.process.poll() is None

    def alive(self) -> bool:
        return self.process.poll() is None

    def _remember(self, pid: int) -> None:
        if pid not in self._seen:
            with contextlib.suppress(psutil.NoSuchProcess):
                self._seen[pid] = psutil.Process(pid)

    def snapshot(self) -> None:
        """Note every process under the worker now, so it is stopped even if reparented."""
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(self.pid).children(recursive=True):
                self._remember(child.pid)

    def stop(self, grace_s: float = 10.0) -> list[int]:
        """Warm shutdown, then kill what is left; returns the pids that had to be killed."""
        with sigint_deferred():
            self.snapshot()
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(grace_s)
                except subprocess.TimeoutExpired:
                    logger.warning("demo worker %s ignored SIGTERM; killing it", self.pid)
                    self.process.kill()
                    self.process.wait(5)
            for proc in tokened(self.token):
                self._remember(proc.pid)
            for proc in _zombie_children():  # orphans adopted and dead before a snapshot
                self._remember(proc.pid)
            return _kill_all(list(self._seen.values()))


def tokened(token: str) -> Iterator[psutil.Process]:
    """Every process started for this demo run: they, and only they, carry its token."""
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get(TOKEN_VAR) == token:
                yield proc
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue


def _zombie_children() -> list[psutil.Process]:
    found = []
    with contextlib.suppress(psutil.NoSuchProcess):
        for child in psutil.Process().children():
            with contextlib.suppress(psutil.NoSuchProcess):
                if child.status() == psutil.STATUS_ZOMBIE:
                    found.append(child)
    return found


def sweep(token: str) -> list[int]:
    """The last line of defence at exit: stop whatever still carries this run's token."""
    return _kill_all(list(tokened(token)))


PR_SET_CHILD_SUBREAPER = 36


@contextlib.contextmanager
def adopting_orphans() -> Iterator[None]:
    """Make this process the subreaper of what it starts (Linux), for the block's length.

    A prefork child whose manager died is then re-parented to the demo, not to init, so the
    demo can collect its exit itself: when the demo returns, every process it started is
    gone, not a zombie waiting for init to reap it."""
    libc = None
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        except (OSError, AttributeError):
            libc = None
    try:
        yield
    finally:
        if libc is not None:
            libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def _reap(procs: Sequence[psutil.Process]) -> None:
    """Collect the exit of those that are (now) this process's own children."""
    me = os.getpid()
    for proc in procs:
        try:
            if proc.ppid() != me:
                continue
        except psutil.NoSuchProcess:
            continue
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(proc.pid, 0 if not _running(proc) else os.WNOHANG)


def wait_gone(procs: Sequence[psutil.Process], timeout_s: float = 5.0) -> list[int]:
    """Wait until none of *procs* exists any more (zombies count as existing: a process
    still in the table is still there); returns the pids still present at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        _reap(procs)
        left = [p for p in procs if _exists(p)]
        if not left or time.monotonic() >= deadline:
            return sorted(p.pid for p in left)
        time.sleep(0.02)


def _exists(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running())
    except psutil.NoSuchProcess:
        return False


def _running(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _kill_all(procs: Sequence[psutil.Process]) -> list[int]:
    """SIGTERM, a short wait, then SIGKILL; ``is_running`` guards against reused pids."""
    alive = [p for p in procs if _running(p)]
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, still = psutil.wait_procs(alive, timeout=3)
    for proc in still:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(still, timeout=3)
    left = wait_gone(procs)
    if left:
        logger.warning("demo process(es) %s still present after SIGKILL", left)
    return sorted(p.pid for p in alive)


DEFERRED_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C (and SIGTERM, SIGHUP) until the block ends, then deliver them.

    A second Ctrl-C must not cut the cleanup short and leave orphans behind.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda got, frame: pending.append(got))
        for signum in DEFERRED_SIGNALS
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(pending):
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)
