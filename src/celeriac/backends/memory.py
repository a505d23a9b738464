"""An in-process result backend (``memory://``), shared by every app naming the same URL.

Chords are joined under the store's lock with the same steps as the Redis and SQLite
backends (see base.chord_next_step).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import states
from ..config import Settings
from ..errors import TimeoutError
from .base import (
    CHORD_CLAIM_S,
    CHORD_DONE_S,
    ChordClaim,
    ChordPart,
    Meta,
    chord_expires_s,
    chord_next_step,
)


@dataclass
class _Chord:
    size: int | None = None
    extra: int = 0
    marker: str | None = None
    marker_expires_at: float | None = None
    expires_at: float | None = None
    parts: dict[str, ChordPart] = field(default_factory=dict)  # by "<task_id>:<index>"

    def live_marker(self, now: float) -> str | None:
        if self.marker in (None, "done", "failed"):
            return self.marker
        if self.marker_expires_at is not None and self.marker_expires_at <= now:
            return None  # the claim's holder died
        return self.marker

    @property
    def complete(self) -> bool:
        return self.size is not None and len(self.parts) == self.size + self.extra

    def ordered_parts(self) -> list[ChordPart]:
        indexed = sorted(
            (p for p in self.parts.values() if p.group_index is not None),
            key=lambda p: p.group_index or 0,
        )
        return indexed + [p for p in self.parts.values() if p.group_index is None]


@dataclass
class _Store:
    cond: threading.Condition = field(default_factory=threading.Condition)
    data: dict[str, tuple[Meta, float | None]] = field(default_factory=dict)
    groups: dict[str, tuple[Meta, float | None]] = field(default_factory=dict)
    chords: dict[str, _Chord] = field(default_factory=dict)


_STORES: dict[str, _Store] = {}
_LOCK = threading.Lock()


class MemoryBackend:
    def __init__(self, url: str, settings: Settings | None = None) -> None:
        self.url = url
        with _LOCK:
            self._store = _STORES.setdefault(url, _Store())
        self._cond, self._data = self._store.cond, self._store.data
        self._chord_expires_s = chord_expires_s(settings) if settings is not None else None

    def store(self, task_id: str, meta: Meta, expires_s: float | None) -> None:
        expires_at = time.monotonic() + expires_s if expires_s else None
        with self._cond:
            self._data[task_id] = (dict(meta), expires_at)
            self._cond.notify_all()

    def get_meta(self, task_id: str) -> Meta | None:
        with self._cond:
            entry = self._data.get(task_id)
            if entry is None:
                return None
            meta, expires_at = entry
            if expires_at is not None and expires_at < time.monotonic():
                del self._data[task_id]
                return None
            return dict(meta)

    def get_many(self, task_ids: Sequence[str]) -> dict[str, Meta]:
        found: dict[str, Meta] = {}
        for task_id in task_ids:
            meta = self.get_meta(task_id)
            if meta is not None:
                found[task_id] = meta
        return found

    def wait_for(self, task_id: str, timeout_s: float | None, interval_s: float = 0.5) -> Meta:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while True:
                meta = self.get_meta(task_id)
                if meta is not None and meta.get("status") in states.READY_STATES:
                    return meta
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"result of {task_id} not ready in time; is a worker consuming its queue?"
                    )
                self._cond.wait(remaining)

    def forget(self, task_id: str) -> None:
        with self._cond:
            self._data.pop(task_id, None)

    # groups
    def save_group(self, group_id: str, meta: Meta, expires_s: float | None) -> None:
        expires_at = time.monotonic() + expires_s if expires_s else None
        with self._cond:
            self._store.groups[group_id] = (dict(meta), expires_at)

    def get_group(self, group_id: str) -> Meta | None:
        with self._cond:
            entry = self._store.groups.get(group_id)
            if entry is None or (entry[1] is not None and entry[1] < time.monotonic()):
                return None
            return dict(entry[0])

    def delete_group(self, group_id: str) -> None:
        with self._cond:
            self._store.groups.pop(group_id, None)

    # chords
    def set_chord_size(self, group_id: str, size: int) -> None:
        now = time.monotonic()
        with self._cond:
            self._purge_expired_chords(now)
            chord = self._store.chords.setdefault(group_id, _Chord())
            chord.size, chord.marker, chord.expires_at = int(size), None, self._expiry(now)

    def add_to_chord(self, group_id: str) -> None:
        with self._cond:
            self._store.chords.setdefault(group_id, _Chord()).extra += 1

    def on_chord_part_return(self, part: ChordPart) -> ChordClaim | None:
        now = time.monotonic()
        with self._cond:
            chord = self._store.chords.setdefault(part.group_id, _Chord())
            marker = chord.live_marker(now)
            if marker == "done":
                return None
            index = "+inf" if part.group_index is None else str(int(part.group_index))
            chord.parts.setdefault(f"{part.task_id}:{index}", part)
            chord.expires_at = self._expiry(now)
            step = chord_next_step(
                marker=marker,
                complete=chord.complete,
                part_failed=part.failed,
                size_known=chord.size is not None,
            )
            if step == "cleanup":
                self._mark_done(chord, now)
            if step != "claim":
                return None
            token = uuid.uuid4().hex
            chord.marker, chord.marker_expires_at = token, now + CHORD_CLAIM_S
            parts = chord.ordered_parts() if chord.complete else []
            return ChordClaim(part.group_id, token, chord.complete, parts)

    def finish_chord(self, claim: ChordClaim, failed: bool) -> None:
        now = time.monotonic()
        with self._cond:
            chord = self._store.chords.get(claim.group_id)
            if chord is None or chord.marker != claim.token:
                return
            if failed and not chord.complete:
                chord.marker, chord.marker_expires_at = "failed", None
                return
            self._mark_done(chord, now)

    def chord_state(self, group_id: str) -> dict[str, object] | None:
        """What is kept for a chord (for tests): size, marker and part count."""
        with self._cond:
            chord = self._store.chords.get(group_id)
            if chord is None:
                return None
            return {"size": chord.size, "marker": chord.marker, "parts": len(chord.parts)}

    @staticmethod
    def _mark_done(chord: _Chord, now: float) -> None:
        chord.parts.clear()
        chord.size, chord.extra = None, 0
        chord.marker, chord.marker_expires_at = "done", None
        chord.expires_at = now + CHORD_DONE_S

    def _expiry(self, now: float) -> float | None:
        return now + self._chord_expires_s if self._chord_expires_s else None

    def _purge_expired_chords(self, now: float) -> None:
        chords = self._store.chords
        for gid in [
            g for g, c in chords.items() if c.expires_at is not None and c.expires_at <= now
        ]:
            del chords[gid]

    def close(self) -> None:
        return None
