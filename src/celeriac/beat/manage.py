"""Change the schedule while beats run: ``PeriodicTasks(app).add/remove/pause/resume/list``.

The changes are kept in the broker, so every beat sees them on its next tick (within
``beat_max_loop_interval``) and they survive restarts. Entries from ``beat_schedule`` can be
paused and resumed but not removed: they come back from the settings at the next start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import InvalidSchedule
from ..schedules import BaseSchedule
from . import slots
from .entries import entry_from_settings, to_json
from .scheduler import Beat
from .store import BeatStore, open_store

if TYPE_CHECKING:
    from ..app import Celeriac


@dataclass(frozen=True)
class EntryState:
    """What ``beat list`` shows about one entry."""

    name: str
    task: str
    schedule: str
    source: str  # "settings" or "runtime"
    is_paused: bool
    last_run_at: datetime | None  # the last slot claimed (or where a new entry started)
    next_run_at: datetime | None


class PeriodicTasks:
    """The schedule kept in *app*'s broker, for reading and changing at run time."""

    def __init__(self, app: Celeriac, store: BeatStore | None = None) -> None:
        self.app = app
        self.store = store if store is not None else open_store(app.broker_url, app.conf)

    def _beat(self) -> Beat:
        return Beat(self.app, store=self.store)

    def list(self) -> list[EntryState]:
        lasts = self.store.last_slots()
        found = []
        for name, entry in sorted(self._beat().entries().items()):
            last = lasts.get(name)
            next_s = slots.next_slot(entry.schedule, float(last)) if last is not None else None
            found.append(
                EntryState(
                    name=name,
                    task=entry.task,
                    schedule=repr(entry.schedule),
                    source=entry.source,
                    is_paused=entry.is_paused,
                    last_run_at=slots.as_datetime(float(last)) if last is not None else None,
                    next_run_at=slots.as_datetime(next_s) if next_s is not None else None,
                )
            )
        return found

    def add(
        self,
        name: str,
        task: str,
        schedule: float | timedelta | BaseSchedule,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        relative: bool = False,
    ) -> None:
        """Add (or replace) a run-time entry; its first run is one period from now."""
        if name in self._beat().configured:
            raise InvalidSchedule(
                f"periodic task {name!r} is defined in beat_schedule; change it there, "
                f"or add this one under another name"
            )
        spec = {
            "task": task,
            "schedule": schedule,
            "args": args,
            "kwargs": kwargs,
            "options": options,
            "relative": relative,
        }
        entry = entry_from_settings(self.app, name, spec)
        try:
            text = orjson.dumps(to_json(entry)).decode()
        except TypeError as exc:
            raise InvalidSchedule(
                f"periodic task {name!r}: args, kwargs and options must be JSON ({exc})"
            ) from exc
        self.store.put_entry(name, text)
        self.store.forget(name)  # a replaced entry starts afresh on its new schedule

    def remove(self, name: str) -> None:
        if name in self._beat().configured:
            raise InvalidSchedule(
                f"periodic task {name!r} comes from beat_schedule in the app's settings; "
                f"remove it there (or pause it: `celeriac beat pause {name}`)"
            )
        if not self.store.delete_entry(name):
            raise self._unknown(name)
        self.store.forget(name)
        self.store.set_paused(name, False)

    def pause(self, name: str) -> None:
        self._known(name)
        self.store.set_paused(name, True)

    def resume(self, name: str) -> None:
        self._known(name)
        self.store.set_paused(name, False)

    def _known(self, name: str) -> None:
        if name not in self._beat().entries():
            raise self._unknown(name)

    def _unknown(self, name: str) -> InvalidSchedule:
        return InvalidSchedule(
            f"there is no periodic task named {name!r}; `celeriac beat list` shows the names"
        )

    def close(self) -> None:
        self.store.close()
