"""Heartbeats and recovery: how a dead worker's messages come back in seconds, not an hour.

Every consuming process has an owner id; the broker records which messages each owner
holds. A live process (or, for prefork children, their manager, which never runs user code)
beats for its owners every ``worker_heartbeat_interval`` seconds. Any worker's sweep puts
back the messages of owners silent for ``worker_dead_after`` seconds, and a message whose
workers died more than ``task_max_redeliveries`` times goes to the dead-letter list.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..app import Celeriac

logger = logging.getLogger(__name__)


class Liveness:
    def __init__(self, app: Celeriac, owners: Callable[[], Sequence[str]]) -> None:
        conf = app.conf
        self.app = app
        self.owners = owners
        self.interval_s = float(conf.worker_heartbeat_interval)
        self.dead_after_s = float(conf.worker_dead_after)
        self.max_losses = int(conf.task_max_redeliveries)
        options = dict(conf.broker_transport_options or {})
        self.visibility_timeout_s = float(options.get("visibility_timeout", 3600))
        self._next_beat = 0.0
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
            broker.heartbeat(list(self.owners()))
            broker.recover(self.dead_after_s, self.visibility_timeout_s, self.max_losses)
        except Exception as exc:  # the broker may be down; the consumer reports that too
            logger.warning("heartbeat/recovery failed: %s", exc)

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
