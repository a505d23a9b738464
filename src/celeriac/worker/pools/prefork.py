"""The prefork pool: a manager process and N forked children that each consume on their own.

The manager has already imported the app and every task module, so children inherit that
code copy-on-write and import nothing again. Each child opens its own broker and backend
connections after the fork and runs the whole loop (fetch, run, store, ack) itself, taking
one message at a time, so no child holds work while a sibling is idle. The manager only
supervises: it replaces dead children, enforces hard time limits, and relays shutdown.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...brokers.base import owner_id
from ...errors import BrokerError
from ...metrics import recovery
from ..autoscale import CHECK_INTERVAL_S, Autoscaler
from ..liveness import Liveness
from . import prefork_child
from .prefork_child import child_main
from .prefork_lost import handle_lost_task, store_terminated
from .prefork_slots import SlotTable

if TYPE_CHECKING:
    from ..runtime import WorkerRuntime

logger = logging.getLogger(__name__)

SUPERVISE_INTERVAL_S = 0.05
# pool_grow (remote control) may add this many children beyond --concurrency: the table the
# children share is made before the first fork, so its size is fixed then
GROW_HEADROOM = 8


def slot_capacity(runtime: WorkerRuntime) -> int:
    """How many children the pool may ever have at once: its slot table's size (the
    events' shared counters are sized from it too)."""
    bounds = runtime.autoscale
    return bounds[0] if bounds else runtime.concurrency + max(GROW_HEADROOM, runtime.concurrency)


@dataclass
class Child:
    index: int
    pid: int
    started_at: float
    killed_for: str | None = None
    revoked_task: str | None = None
    revoked_signum: int | None = None  # the signal revoke(terminate=True) asked for
    retiring: bool = False  # asked to stop because the pool shrinks: not replaced


class PreforkPool:
    name = "prefork"
    announces_ready = True  # "ready." (and worker_ready) once the children are forked
    on_ready: Callable[[], None] | None = None

    def __init__(self, runtime: WorkerRuntime) -> None:
        self.runtime = runtime
        bounds = runtime.autoscale
        # one slot per child there may ever be: the table is shared before the first fork
        self.table = SlotTable(slot_capacity(runtime))
        self.children: dict[int, Child] = {}  # pid -> child
        self.autoscaler = Autoscaler(*bounds) if bounds else None
        self._target = min(runtime.concurrency, self.table.count)  # children wanted now
        self._next_scale_check = 0.0
        self._sent_warm = False
        self._sent_cold = False
        # the manager beats for its children: it never runs user code, so a task that holds
        # the GIL or blocks cannot make a live child look dead
        self.liveness = Liveness(runtime.app, self._owners, self._started)

    def _owners(self) -> list[str]:
        return [_child_owner(c) for c in self.children.values()]

    def _started(self) -> dict[str, list[str]]:
        """What each child is running (one task at a time): the rest it holds is waiting."""
        started: dict[str, list[str]] = {}
        for child in list(self.children.values()):
            running = self.table.running(child.index)
            started[_child_owner(child)] = [running.receipt] if running is not None else []
        return started

    # the manager's loop
    def run(self) -> int:
        # what the manager has loaded stays out of the collector's reach, so no child's
        # collection writes to (and so copies) the pages they share with the manager
        gc.collect()
        gc.freeze()
        prefork_child.manager_pid = os.getpid()  # children check it (see _die_with_parent)
        for index in range(self._target):
            self._spawn(index)
        self.runtime.app.broker.ping()  # the manager's own connection, opened after the forks
        if self.on_ready is not None:
            self.on_ready()
        try:
            while self.children or not self.runtime.stop.stopping:
                self._reap()
                self._enforce_time_limits()
                self._relay_shutdown()
                self._scale()
                self.liveness.tick()
                time.sleep(SUPERVISE_INTERVAL_S)
        finally:
            self._kill_all()
            self.table.close()
        return 0

    def _spawn(self, index: int) -> None:
        app = self.runtime.app
        app.close()  # no socket of the manager's may live on in a child
        sys.stdout.flush()
        sys.stderr.flush()
        self.table.reset(index)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, measured by integration tests
            code = 1
            try:
                code = child_main(self.runtime, index, self.table)
            except BaseException:
                logger.exception("child %d crashed", index)
            finally:
                os._exit(code)
        self.children[pid] = Child(index, pid, time.time())
        logger.info("child %d started (pid %d)", index, pid)

    # growing and shrinking (--autoscale, and the pool_grow/pool_shrink remote controls)
    def pool_grow(self, n: int = 1) -> int:
        """Ask for *n* more children (up to the pool's slots); returns the new count.
        Safe from any thread: the manager's loop does the forking."""
        wanted = self._target + max(0, n)
        if wanted > self.table.count:
            logger.warning(
                "pool_grow: this pool has %d slots (--concurrency plus room to grow, or "
                "--autoscale's MAX); growing to %d, not %d",
                self.table.count,
                self.table.count,
                wanted,
            )
        self._target = min(wanted, self.table.count)
        return self._target

    def pool_shrink(self, n: int = 1) -> int:
        """Ask for *n* fewer children (never fewer than one); returns the new count."""
        self._target = max(1, self._target - max(0, n))
        return self._target

    def _scale(self) -> None:
        if self.runtime.stop.stopping:
            return
        if self.autoscaler is not None:
            now = time.monotonic()
            if now >= self._next_scale_check:
                self._next_scale_check = now + CHECK_INTERVAL_S
                self._autoscale(now)
        active = [c for c in self.children.values() if not c.retiring]
        if len(active) < self._target:
            used = {c.index for c in self.children.values()}
            free = [i for i in range(self.table.count) if i not in used]
            for index in free[: self._target - len(active)]:
                self._spawn(index)
            self._reconnect()
        elif len(active) > self._target:
            self._retire(active, len(active) - self._target)
        self.runtime.concurrency = self._target  # what the banner and stats report

    def _autoscale(self, now: float) -> None:
        assert self.autoscaler is not None
        active = [c for c in self.children.values() if not c.retiring]
        busy = sum(1 for c in active if self.table.running(c.index) is not None)
        try:
            broker = self.runtime.app.broker
            queued = sum(broker.queue_length(q) for q in self.runtime.queues)
        except Exception as exc:  # the broker may be down; the consumers report that
            logger.debug("autoscale: cannot read the queue lengths: %s", exc)
            return
        target = self.autoscaler.target(len(active), busy, queued, now)
        if target != self._target:
            logger.info(
                "autoscale: %d busy, %d waiting: %s to %d children",
                busy,
                queued,
                "growing" if target > self._target else "shrinking",
                target,
            )
            self._target = target

    def _retire(self, active: list[Child], count: int) -> None:
        """Stop *count* children, idle ones first, the highest index first; a busy one
        finishes its task (SIGTERM is a warm stop for a child)."""
        order = sorted(active, key=lambda c: (self.table.running(c.index) is not None, -c.index))
        for child in order[:count]:
            child.retiring = True
            _kill(child.pid, signal.SIGTERM)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                continue
            self._on_child_exit(child, status)

    def _on_child_exit(self, child: Child, status: int) -> None:
        broker: Any = self.runtime.app.broker
        if hasattr(broker, "adopt_inbox"):  # so the ack policy below finds the message
            try:
                broker.adopt_inbox(_child_owner(child))
            except Exception as exc:
                logger.warning("could not adopt the inbox of child %d: %s", child.index, exc)
        running = self.table.running(child.index)
        self.table.clear(child.index)
        reason = _describe_exit(status)
        stopping = self.runtime.stop.stopping
        if running is not None and child.revoked_task == running.task_id:
            logger.warning(
                "child %d (pid %d) terminated by revoke of %s[%s]",
                child.index,
                child.pid,
                running.task_name,
                running.task_id,
            )
            store_terminated(self.runtime.app, running, child.revoked_signum, self.runtime.nodename)
        elif running is not None:
            logger.error(
                "child %d (pid %d) %s while running %s[%s]",
                child.index,
                child.pid,
                reason,
                running.task_name,
                running.task_id,
            )
            handle_lost_task(
                self.runtime.app, running, reason, child.killed_for, _child_owner(child)
            )
        elif os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            logger.info("child %d (pid %d) exited", child.index, child.pid)
        elif not stopping:
            logger.error("child %d (pid %d) %s", child.index, child.pid, reason)
        self._recover_held(child)
        if child.retiring:
            self.table.vacate(child.index)
            logger.info("child %d (pid %d) retired: the pool shrank", child.index, child.pid)
        elif not stopping:
            self._spawn(child.index)
            self._reconnect()

    def _reconnect(self) -> None:
        """Open the manager's connection again (the fork closed it); with the broker down,
        the liveness tick keeps trying, and a raise here would take the whole worker down."""
        try:
            self.runtime.app.broker.ping()
        except BrokerError as exc:
            logger.warning("manager: %s; will retry", exc)

    def running_ids(self) -> set[str]:
        """The ids of the tasks the children are running now (a revoke leaves them be)."""
        found = (self.table.running(child.index) for child in list(self.children.values()))
        return {running.task_id for running in found if running is not None}

    def terminate_task(self, task_id: str, signum: int) -> bool:
        """Stop the child running *task_id* (revoke with terminate=True).

        Our children treat SIGTERM as "finish and exit", so a TERM or INT request kills the
        child instead; any other signal is sent as asked."""
        for child in self.children.values():
            running = self.table.running(child.index)
            if running is not None and running.task_id == task_id:
                child.revoked_task = task_id
                child.revoked_signum = signum
                if signum in (signal.SIGTERM, signal.SIGINT):
                    signum = signal.SIGKILL
                _kill(child.pid, signum)
                return True
        return False

    def _recover_held(self, child: Child) -> None:
        """Put back what a child held but never started: it is dead for sure, no need to
        wait for its heartbeat to go stale. The one it was running has been settled by the
        ack policy (and counted a loss); the others were only prefetched, so they do not
        count towards ``task_max_redeliveries`` and an innocent message never follows a
        poison one into the dead letters."""
        try:
            restored, dead = self.runtime.app.broker.recover_owner(_child_owner(child), None)
        except Exception as exc:
            logger.warning("could not recover the messages of child %d: %s", child.index, exc)
            return
        recovery.recovered(restored, dead)
        if restored or dead:
            logger.warning(
                "child %d held %d message(s): restored %d, dead-lettered %d",
                child.index,
                restored + dead,
                restored,
                dead,
            )

    def _enforce_time_limits(self) -> None:
        now = time.time()
        for child in list(self.children.values()):
            running = self.table.running(child.index)
            if running is None or running.hard_limit_s is None or child.killed_for:
                continue
            if now - running.started_at > running.hard_limit_s:
                logger.error(
                    "hard time limit (%ss) exceeded for %s[%s]; killing child %d (pid %d)",
                    running.hard_limit_s,
                    running.task_name,
                    running.task_id,
                    child.index,
                    child.pid,
                )
                child.killed_for = f"time limit {running.hard_limit_s}s"
                _kill(child.pid, signal.SIGKILL)

    def _relay_shutdown(self) -> None:
        stop = self.runtime.stop
        if stop.cold.is_set() and not self._sent_cold:
            self._sent_cold = True
            for pid in self.children:
                _kill(pid, signal.SIGQUIT)
        elif stop.warm.is_set() and not self._sent_warm:
            self._sent_warm = True
            for pid in self.children:
                _kill(pid, signal.SIGTERM)

    def _kill_all(self) -> None:
        for pid in list(self.children):
            _kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.children.clear()


def _child_owner(child: Child) -> str:
    """The owner id a child's broker uses (see prefork_child)."""
    return owner_id(f"celeriac.child{child.index}.{child.pid}")


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = str(signum)
        return f"was killed by signal {signum} ({name})"
    return f"exited with code {os.WEXITSTATUS(status)}"
