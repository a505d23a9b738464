"""Celery's monitoring events: sent by workers (and clients with ``task_send_sent_event``),
read by Flower, ``celery events``, ``celeriac events`` and :class:`EventReceiver`.

- ``wire``: the format and the ``celeryev`` exchange;
- ``transport``: Redis PUB/SUB, or a table of the SQLite broker;
- ``dispatcher``: sending, with task events batched;
- ``receiver``: reading;
- ``monitor``: a running summary (workers, tasks per state, throughput) built from events.

The worker's side, a view of the task lifecycle, is ``celeriac.worker.events``.
"""

from .dispatcher import EventDispatcher, LamportClock
from .receiver import EventReceiver

__all__ = ["EventDispatcher", "EventReceiver", "LamportClock"]
