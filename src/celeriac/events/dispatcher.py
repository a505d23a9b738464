"""Send events: Celery's ``EventDispatcher``, with task events sent in batches.

``send`` publishes one event now (worker events: online, heartbeat, offline; a client's
task-sent). ``buffer`` holds task events and sends them as ``task.multi`` lists
(``buffer_limit`` events at most in each, all in one round trip) once the oldest held one is
``flush_interval_s`` old: a busy worker pays one round trip per batch, not one per event, and
sends it from the task's own thread at the next event (no hand-over between threads). A
flusher thread sends what is left when no more events come.
A publish that fails is logged and its events are dropped: monitoring never stops a task.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import wire
from .transport import EventTransport, transport_for

if TYPE_CHECKING:
    from ..app import Celeriac

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.05
BUFFER_LIMIT = 500  # events in one task.multi message


class LamportClock:
    """Celery's logical clock: forward on every event sent, adjust on every one read."""

    def __init__(self, value: int = 0) -> None:
        self.value = value
        self._lock = threading.Lock()

    def forward(self) -> int:
        with self._lock:
            self.value += 1
            return self.value

    def forward_many(self, count: int) -> int:
        """Move on by *count* at once; returns the first of the values taken."""
        with self._lock:
            first = self.value + 1
            self.value += count
            return first

    def adjust(self, other: int) -> int:
        with self._lock:
            self.value = max(self.value, int(other)) + 1
            return self.value


class EventDispatcher:
    def __init__(
        self,
        app: Celeriac,
        hostname: str,
        *,
        transport: EventTransport | None = None,
        clock: LamportClock | None = None,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        buffer_limit: int = BUFFER_LIMIT,
    ) -> None:
        self.app = app
        self.hostname = hostname
        self._transport = transport
        self.clock = clock or LamportClock()
        self.flush_interval_s = flush_interval_s
        self.buffer_limit = buffer_limit
        self.pid = os.getpid()
        self.utcoffset = wire.utcoffset()
        # the envelope names it as kombu's does; the transport publishes on its channels
        self.exchange = str(app.conf.get("event_exchange") or wire.EXCHANGE)
        self._held: deque[wire.Event] = deque()
        self._batch_started: float | None = None  # when the first held event came
        self._flush_lock = threading.Lock()
        self._flush_asked = False
        self._pending = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._failures = 0
        # called by the flusher thread at least every half second (the worker's events
        # view follows enable_events/disable_events in prefork children with it)
        self.on_tick: Callable[[], None] | None = None

    @property
    def transport(self) -> EventTransport:
        if self._transport is None:
            self._transport = transport_for(self.app)
        return self._transport

    def event(self, event_type: str, fields: dict[str, Any]) -> wire.Event:
        """An event with Celery's common fields, its clock forwarded."""
        fields["type"] = event_type
        fields["hostname"] = self.hostname
        fields["utcoffset"] = self.utcoffset
        fields["pid"] = self.pid
        fields["clock"] = self.clock.forward()
        fields.setdefault("timestamp", time.time())
        return fields

    def send(self, event_type: str, **fields: Any) -> None:
        """Publish one event now (its routing key is its type, ``-`` → ``.``)."""
        event = self.event(event_type, fields)
        key = wire.routing_key(event_type)
        self._publish([(key, wire.encode(event, self.hostname, key, self.exchange))])

    def buffer(self, event_type: str, fields: dict[str, Any]) -> None:
        """Hold a task event for the next ``task.multi`` batch. Its time is taken now; its
        clock when the batch goes out, in the order events were held."""
        now = fields["timestamp"] = time.time()
        fields["type"] = event_type
        self._held.append(fields)  # a deque: append and popleft need no lock
        started = self._batch_started
        if started is None:
            self._batch_started = now
            if not self._flush_asked:  # the thread sends it if no later event does
                self._flush_asked = True
                self._pending.set()
                if self._thread is None:
                    self.start()
        elif now - started >= self.flush_interval_s:
            self.flush()  # a busy worker sends its batches itself: no hand-over to a thread

    def flush(self) -> None:
        """Send every held event now, ``BATCH_LIMIT`` to a message, in one round trip."""
        held = self._held
        events: list[wire.Event] = []
        self._batch_started = None
        with self._flush_lock:  # one flush at a time, so clocks follow the held order
            while True:
                try:
                    events.append(held.popleft())
                except IndexError:
                    break
            if not events:
                return
            clock = self.clock.forward_many(len(events))
        common = {"hostname": self.hostname, "utcoffset": self.utcoffset, "pid": self.pid}
        for event in events:
            event.update(common)
            event["clock"] = clock
            clock += 1
        items = []
        for start in range(0, len(events), self.buffer_limit):
            batch = events[start : start + self.buffer_limit]
            key = f"{wire.group_of(batch[0]['type'])}.multi"
            items.append((key, wire.encode(batch, self.hostname, key, self.exchange)))
        self._publish(items)

    def _publish(self, items: list[tuple[str, bytes]]) -> None:
        try:
            self.transport.publish(items)
        except Exception as exc:  # the broker may be down: events are dropped, tasks go on
            self._failures += 1
            if self._failures == 1 or self._failures % 100 == 0:
                logger.warning("could not send %d event message(s): %s", len(items), exc)
        else:
            self._failures = 0

    def start(self) -> None:
        """Start the flusher thread (again, in a forked child: threads do not survive fork)."""
        self._stopped = False
        thread = threading.Thread(target=self._run, name="celeriac-events", daemon=True)
        self._thread = thread
        thread.start()

    def _run(self) -> None:
        while not self._stopped:
            if self.on_tick is not None:
                self.on_tick()
            if self._pending.wait(0.5):
                time.sleep(2 * self.flush_interval_s)  # a busy producer flushes before this
                self._pending.clear()
                self._flush_asked = False
            if not self._held:
                continue
            started = self._batch_started
            if started is None or time.time() - started >= self.flush_interval_s:
                self.flush()  # the last events before a pause
            else:  # a batch just begun: look again once it is due
                self._flush_asked = True
                self._pending.set()

    def after_fork(self) -> None:
        """In a freshly forked child: own pid, own connection, no inherited events."""
        self.pid = os.getpid()
        self._transport = None
        self._held = deque()
        self._batch_started = None
        self._flush_lock = threading.Lock()
        self._flush_asked = False
        self.clock._lock = threading.Lock()
        self._pending = threading.Event()
        self._thread = None

    def close(self) -> None:
        self._stopped = True
        self._pending.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)
        self._thread = None
        self.flush()
