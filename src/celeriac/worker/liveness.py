"""Heartbeats and recovery: how a dead worker's messages come back in seconds, not an hour.

Every consuming process has an owner id; the broker records which messages each owner
holds. A live process (or, for prefork children, their manager, which never runs user code)
beats for its owners every ``worker_heartbeat_interval`` seconds. Any worker's sweep puts
back the messages of owners silent for ``worker_dead_after`` seconds, and a message whose
workers died more than ``task_max_redeliveries`` times goes to the dead-letter list.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import lifecycle
from ..brokers.base import owner_pid_here
from ..metrics import progress, recovery
from ..pids import pid_alive

if TYPE_CHECKING:
    from ..app import Celeriac

logger = logging.getLogger(__name__)


Started = Callable[[], Mapping[str, Collection[str]]]


class Liveness:
    def __init__(
        self,
        app: Celeriac,
        owners: Callable[[], Sequence[str]],
        started: Started | None = None,
    ) -> None:
        """*started*: each owner's receipts it has begun, read at each beat; what an owner
        holds besides goes back without counting a loss if it dies (see Broker.heartbeat)."""
        conf = app.conf
        self.app = app
        self.owners = owners
        self.started = started
        self.interval_s = float(conf.worker_heartbeat_interval)
        self.dead_after_s = float(conf.worker_dead_after)
        self.max_losses = int(conf.task_max_redeliveries)
        options = dict(conf.broker_transport_options or {})
        self.visibility_timeout_s = float(options.get("visibility_timeout", 3600))
        self._next_beat = 0.0
        # monotonic time from which sweeping is safe; None while the broker is unreachable
        self._sweep_after: float | None = 0.0
        self._stopped = False
        self._thread: threading.Thread | None = None

    def tick(self) -> None:
        """Beat if due, then sweep for dead owners; errors are logged, never raised."""
        now = time.monotonic()
        if now < self._next_beat:
            return
        self._next_beat = now + self.interval_s
        broker = self.app.broker
        try:
            owners = list(self.owners())
            if self.started is None:
                broker.heartbeat(owners)
            else:
                broker.heartbeat(owners, self.started())
        except Exception as exc:  # the broker may be down; the consumer reports that too
            if self._sweep_after is not None:
                logger.warning("heartbeat failed: %s; will retry", exc)
            self._sweep_after = None
            return
        took_s = time.monotonic() - now
        progress.broker_ok()  # /readyz: the broker answered (a no-op without --metrics-port)
        if took_s > self.interval_s and self._sweep_after is not None:
            # Redis answered late (frozen by SIGSTOP, swapping, a long command): the beats
            # of every worker, ours included, are as old as the stall, so for a while every
            # live owner looks dead. Treat it as an outage: no sweep until all could beat.
            logger.warning(
                "heartbeat took %.1fs (Redis stalled); sweeping for dead workers in %gs",
                took_s,
                self.dead_after_s,
            )
            self._sweep_after = time.monotonic() + self.dead_after_s
            return
        if lifecycle.worker_heartbeat.hooks:  # heartbeat_sent, and later worker-heartbeat
            lifecycle.worker_heartbeat.emit(self)
        if self._sweep_after is None:
            # back after an outage: nobody could beat while the broker was gone, so every
            # other live worker looks dead until its next beat; sweeping now would hand out
            # the messages they are running. Give them worker_dead_after to beat first.
            logger.info(
                "heartbeat works again; sweeping for dead workers in %gs", self.dead_after_s
            )
            self._sweep_after = now + self.dead_after_s
        if now < self._sweep_after:
            return
        try:
            self._recover_gone_here(broker)
            counts = broker.recover(self.dead_after_s, self.visibility_timeout_s, self.max_losses)
            if recovery.recovered_hooks and counts:
                recovery.recovered(*counts)
        except Exception as exc:
            logger.warning("recovery of dead workers' messages failed: %s", exc)

    def _recover_gone_here(self, broker: Any) -> None:
        """Recover at once the owners that were processes of this host and no longer exist
        (a worker restarted after a SIGKILL or an OOM kill), rather than after
        ``worker_dead_after``. Only owners that also missed two beats: a live process with
        the same host name in another pid namespace keeps beating and is never taken."""
        quick_after_s = min(self.dead_after_s, 2.0 * self.interval_s + 0.5)
        if quick_after_s >= self.dead_after_s:
            return
        for owner in broker.silent_owners(quick_after_s):
            pid = owner_pid_here(owner)
            if pid is None or pid == os.getpid() or pid_alive(pid):
                continue
            restored, dead = broker.recover_owner(owner, self.max_losses)
            recovery.recovered(restored, dead)
            if restored or dead:
                logger.warning(
                    "owner %s is gone (no process %d here): restored %d message(s), "
                    "dead-lettered %d",
                    owner,
                    pid,
                    restored,
                    dead,
                )

    def start_thread(self) -> None:
        """Beat from a thread of its own, so a long task in the consumer cannot stop it."""
        self._thread = threading.Thread(target=self._run, name="celeriac-liveness", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped:
            self.tick()
            time.sleep(min(0.2, self.interval_s))

    def stop(self) -> None:
        self._stopped = True
        if self._thread is not None:
            self._thread.join(5)
