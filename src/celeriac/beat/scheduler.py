"""The beat loop: on each tick, send every entry's due slots that this beat manages to claim.

Any number of beats may run this loop against one broker. For each entry a beat reads the
last slot from the broker, works out the due slots from it, and claims the ones it sends by
a compare-and-set in the broker before it sends them (see store). The loser of a race sees
the new last slot on its next tick and has nothing left to send.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson

from ..brokers.base import owner_pid_here
from ..errors import BrokerError, CeleriacError, InvalidSchedule
from ..pids import pid_alive
from . import slots
from .entries import Entry, entry_from_settings, from_json
from .store import BeatStore, Pending, open_store

if TYPE_CHECKING:
    from ..app import Celeriac

logger = logging.getLogger(__name__)

DEFAULT_MAX_INTERVAL_S = 5.0  # also how soon a run-time schedule change is seen
DEFAULT_LATE_AFTER_S = 5.0
DEFAULT_CLAIM_TIMEOUT_S = 10.0
RETRY_AFTER_ERROR_S = 1.0


def settings_entries(app: Celeriac) -> dict[str, Entry]:
    """The app's ``beat_schedule``, each item checked (InvalidSchedule names a bad one)."""
    schedule = app.conf.get("beat_schedule") or {}
    if not hasattr(schedule, "items"):
        raise InvalidSchedule(
            f"beat_schedule is a {type(schedule).__name__}; use a dict of name -> entry dict"
        )
    return {name: entry_from_settings(app, name, spec) for name, spec in schedule.items()}


def _positive(app: Celeriac, name: str, default: float) -> float:
    value = app.conf.get(name)
    if value is None or value == 0:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise InvalidSchedule(f"{name}={value!r} must be a number of seconds above 0")
    return float(value)


class Beat:
    """Sends the periodic tasks of *app*'s schedule, alone or beside other beats."""

    def __init__(
        self,
        app: Celeriac,
        *,
        store: BeatStore | None = None,
        clock: Callable[[], float] = time.time,
        max_interval_s: float | None = None,
    ) -> None:
        self.app = app
        self.clock = clock
        self.policy = slots.check_policy(app.conf.get("beat_catch_up") or "once")
        self.late_after_s = _positive(app, "beat_catch_up_after", DEFAULT_LATE_AFTER_S)
        self.claim_timeout_s = _positive(app, "beat_claim_timeout", DEFAULT_CLAIM_TIMEOUT_S)
        self.max_interval_s = max_interval_s or _positive(
            app, "beat_max_loop_interval", DEFAULT_MAX_INTERVAL_S
        )
        self.configured = settings_entries(app)
        self.store = store if store is not None else open_store(app.broker_url, app.conf)
        # <name>.<pid>@<host>, as brokers.base.owner_pid_here reads it
        self.owner = f"beat.{threading.get_ident()}.{os.getpid()}@{socket.gethostname()}"
        self.sent_count = 0

    def entries(self) -> dict[str, Entry]:
        """The settings' entries and the run-time ones from the broker, with pause flags."""
        found = dict(self.configured)
        for name, text in self.store.entries().items():
            if name in found:
                continue  # beat_schedule wins; `beat add` refuses such a name anyway
            try:
                found[name] = from_json(self.app, name, orjson.loads(text))
            except (CeleriacError, ValueError, TypeError) as exc:
                logger.error("beat: skipping run-time entry %r: %s", name, exc)
        for name in self.store.paused():
            if name in found:
                found[name] = dataclasses.replace(found[name], is_paused=True)
        return found

    def tick(self) -> float:
        """Send what is due now; returns the seconds until something may be due again."""
        now_s = self.clock()
        wait_s = self.max_interval_s
        entries = self.entries()
        self._take_over_expired(entries, now_s)  # older than anything due now
        lasts = self.store.last_slots()
        for entry in entries.values():
            try:
                wait_s = min(wait_s, self._tick_entry(entry, lasts.get(entry.name), now_s))
            except (InvalidSchedule, ValueError) as exc:  # one bad entry must not stop the rest
                logger.error("beat: %s cannot be scheduled: %s", entry.name, exc)
        return max(wait_s, 0.0)

    def _tick_entry(self, entry: Entry, last: str | None, now_s: float) -> float:
        if last is None:  # a new entry: record where its slots start, for every beat
            anchor = slots.format_slot(slots.first_anchor(entry.schedule, now_s))
            self.store.claim(entry.name, None, anchor, None)
            return 0.0
        due, next_s, more = slots.due_slots(
            entry.schedule, float(last), now_s, oldest_first=self.policy == "all"
        )
        # a backlog longer than one tick looks at, under "once" or "none": this part is
        # skipped whole, and the policy applies to the newest part
        skip_all = entry.is_paused or (more and self.policy != "all")
        chosen = slots.plan(due, now_s, self.policy, self.late_after_s, skip_all)
        expected = last
        for slot_s in chosen.send:
            slot = slots.format_slot(slot_s)
            claim = Pending(entry.name, slot, self.clock() + self.claim_timeout_s, self.owner)
            if not self.store.claim(entry.name, expected, slot, claim):
                return 0.0  # another beat moved on: look again at once
            expected = slot
            self._send(entry, slot_s)
            self.store.confirm(entry.name, slot)
        if chosen.last_s is not None:
            final = slots.format_slot(chosen.last_s)
            if final != expected and not self.store.claim(entry.name, expected, final, None):
                return 0.0
            if chosen.send != due and not entry.is_paused:
                skipped = len(due) - len(chosen.send)
                logger.info("beat: %s skipped %d missed run(s)", entry.name, skipped)
        if more:
            return 0.0  # more backlog: the next tick goes on at once
        return next_s - now_s

    def _send(self, entry: Entry, slot_s: float) -> None:
        task_id = slots.slot_task_id(entry.name, slot_s)
        logger.info(
            "beat: sending %s (%s) for %s id %s",
            entry.name,
            entry.task,
            slots.as_datetime(slot_s).isoformat(),
            task_id,
        )
        try:
            self.app.send_task(
                entry.task, entry.args, entry.kwargs, task_id=task_id, **entry.options
            )
        except BrokerError:
            raise  # the claim stays pending: this beat or another sends it later
        except CeleriacError as exc:  # sending it again would fail again: log, move on
            logger.error("beat: %s[%s] cannot be sent: %s", entry.task, task_id, exc)
            return
        self.sent_count += 1

    def _take_over_expired(self, entries: dict[str, Entry], now_s: float) -> None:
        """Send the slots whose claimer died between claiming and confirming them."""
        for stale in self.store.expired(now_s):
            if self._claimer_alive(stale, now_s):
                continue  # slow, not dead: its send is likely under way
            mine = Pending(stale.name, stale.slot, now_s + self.claim_timeout_s, self.owner)
            if not self.store.take_over(mine, now_s):
                continue
            entry = entries.get(stale.name)
            if entry is not None and not self._known_to_backend(entry, float(stale.slot)):
                logger.warning(
                    "beat: %s's run at %s was claimed by %s, which never confirmed it; "
                    "sending it now",
                    stale.name,
                    stale.slot,
                    stale.owner,
                )
                self._send(entry, float(stale.slot))
            self.store.confirm(stale.name, stale.slot)

    def _claimer_alive(self, stale: Pending, now_s: float) -> bool:
        """Whether the claim's beat is a live process of this host, given a while longer
        (at most two more claim timeouts) before its claim is taken from it."""
        pid = owner_pid_here(stale.owner)
        if pid is None or pid == os.getpid():
            return False
        if now_s > stale.lease_until_s + 2 * self.claim_timeout_s:
            return False
        return pid_alive(pid)

    def _known_to_backend(self, entry: Entry, slot_s: float) -> bool:
        """Whether a worker already stored a state for this run: then its claimer died after
        sending it, and sending it again would run it twice."""
        task_id = slots.slot_task_id(entry.name, slot_s)
        try:
            return self.app.backend.get_meta(task_id) is not None
        except CeleriacError as exc:
            logger.warning("beat: cannot ask the result backend about %s: %s", task_id, exc)
            return False

    def run(self, stop: threading.Event) -> None:
        """Tick until *stop* is set; a broker error is logged and retried, never fatal."""
        logger.info(
            "beat: starting with %d entr%s (catch-up %s, owner %s)",
            len(self.configured),
            "y" if len(self.configured) == 1 else "ies",
            self.policy,
            self.owner,
        )
        while not stop.is_set():
            try:
                wait_s = self.tick()
            except CeleriacError as exc:
                logger.error("beat: tick failed: %s; retrying", exc)
                wait_s = RETRY_AFTER_ERROR_S
            except Exception:  # keep sending the schedule whatever one tick ran into
                logger.exception("beat: tick failed; retrying")
                wait_s = RETRY_AFTER_ERROR_S
            stop.wait(min(wait_s, self.max_interval_s))
        logger.info("beat: stopped after sending %d task(s)", self.sent_count)

    def close(self) -> None:
        self.store.close()
