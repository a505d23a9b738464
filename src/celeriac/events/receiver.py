"""Read events: what Celery's ``app.events.Receiver`` does, for celeriac and Celery workers.

::

    from celeriac.events import EventReceiver

    def on_event(event):
        print(event["type"], event.get("uuid"))

    EventReceiver(app, handlers={"*": on_event}).capture(limit=10, timeout=5)

Handlers are keyed by event type (``"task-succeeded"``); ``"*"`` gets every event. Each
event gets ``local_received`` (when it was read here) and its timestamp moved to this
machine's clock, as Celery's receiver does; ``task.multi`` batches are unpacked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from . import wire
from .dispatcher import LamportClock
from .transport import EventTransport, transport_for

if TYPE_CHECKING:
    from ..app import Celeriac

logger = logging.getLogger(__name__)

Handler = Callable[[wire.Event], object]


class EventReceiver:
    def __init__(
        self,
        app: Celeriac,
        handlers: Mapping[str, Handler] | None = None,
        *,
        transport: EventTransport | None = None,
    ) -> None:
        self.app = app
        self.handlers = dict(handlers or {})
        self._transport = transport
        self.clock = LamportClock()

    @property
    def transport(self) -> EventTransport:
        if self._transport is None:
            self._transport = transport_for(self.app)
        return self._transport

    def events(self, timeout_s: float | None = None) -> Iterator[wire.Event | None]:
        """Each event as it arrives (None now and then while nothing does), until
        *timeout_s* has passed (None: for ever)."""
        for raw in self.transport.listen(timeout_s):
            if raw is None:
                yield None
                continue
            try:
                batch = wire.decode(raw)
            except ValueError as exc:
                logger.warning("ignoring a message on the events exchange: %s", exc)
                continue
            for event in batch:
                yield self._localize(event)

    def _localize(self, event: wire.Event) -> wire.Event:
        clock = event.get("clock")
        if isinstance(clock, int):
            self.clock.adjust(clock)
        else:
            event["clock"] = self.clock.forward()
        offset, timestamp = event.get("utcoffset"), event.get("timestamp")
        if isinstance(offset, (int, float)) and isinstance(timestamp, (int, float)):
            event["timestamp"] = timestamp + (offset - wire.utcoffset()) * 3600
        event["local_received"] = time.time()
        return event

    def capture(
        self,
        limit: int | None = None,
        timeout: float | None = None,
        wakeup: bool = False,  # Celery's argument; no worker is woken here
    ) -> int:
        """Call the handlers for each event until *limit* events or *timeout* seconds;
        returns how many events were handled."""
        count = 0
        for event in self.events(timeout):
            if event is None:
                continue
            self.process(event)
            count += 1
            if limit is not None and count >= limit:
                break
        return count

    def process(self, event: wire.Event) -> None:
        handler = self.handlers.get(str(event["type"])) or self.handlers.get("*")
        if handler is not None:
            handler(event)
