"""Periodic tasks: ``celeriac beat``, ``celeriac worker -B`` and run-time schedule changes.

- entries: ``beat_schedule`` items, checked, and their JSON form
- slots: due instants, catch-up policy, daylight saving, each slot's task id
- store (+ store_redis, store_sqlite): the shared state in the broker, with atomic claims
- scheduler: the loop (``Beat``)
- manage: ``PeriodicTasks``, the Python form of ``celeriac beat list|add|remove|pause|resume``
"""

from __future__ import annotations

from .entries import Entry
from .manage import EntryState, PeriodicTasks
from .scheduler import Beat
from .slots import slot_task_id

__all__ = ["Beat", "Entry", "EntryState", "PeriodicTasks", "slot_task_id"]
