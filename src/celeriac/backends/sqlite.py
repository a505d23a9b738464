"""The embedded SQLite result backend (``sqlite:///path``): results next to the broker's queues.

One row per task id in ``celeriac_task_meta`` holding the same meta JSON that the Redis
backend keeps at ``celery-task-meta-<id>``. Expired rows are never returned, and are deleted
lazily: a store deletes up to a batch of expired rows at most once a minute per process (or
every half ``result_expires``, if shorter), and again at the next store while it finds a full
batch, so the file stays bounded however fast results come.

``wait_for`` polls as the broker's fetch does (sqlite_wait): it reads the row again only
when another connection has committed, pausing 1 ms at first and up to 50 ms (or the
caller's *interval_s*, if shorter); a store in the same process wakes it at once.

Chords are joined in ``celeriac_chord`` (size, claim marker, expiry) and
``celeriac_chord_part`` (one row per task id and index), each part inside one write
transaction; saved groups live in ``celeriac_group_meta``.
"""

from __future__ import annotations

import logging
import sqlite3
import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson

from .. import states
from ..brokers.sqlite_db import DEFAULT_BUSY_TIMEOUT_S, Database, database_path
from ..brokers.sqlite_schema import create_result_schema
from ..brokers.sqlite_wait import MAX_POLL_S, MIN_POLL_S, AdaptivePoll, local_signal
from ..config import Settings
from ..errors import BackendError, TimeoutError
from ..serialization import dumps_json
from .base import (
    CHORD_CLAIM_S,
    CHORD_DONE_S,
    ChordClaim,
    ChordPart,
    Meta,
    chord_expires_s,
    chord_next_step,
    decode_meta,
)

logger = logging.getLogger(__name__)

CLEANUP_EVERY_S = 60.0
CLEANUP_BATCH = 1000

UPSERT = """
    INSERT INTO celeriac_task_meta (task_id, meta, stored_at, expires_at) VALUES (?, ?, ?, ?)
    ON CONFLICT (task_id) DO UPDATE
    SET meta = excluded.meta, stored_at = excluded.stored_at, expires_at = excluded.expires_at
"""
DELETE_EXPIRED = """
    DELETE FROM celeriac_task_meta WHERE task_id IN (
        SELECT task_id FROM celeriac_task_meta
        WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT ?)
"""

CHORD_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS celeriac_chord (
        group_id TEXT PRIMARY KEY,
        size INTEGER,
        extra INTEGER NOT NULL DEFAULT 0,
        marker TEXT,
        marker_expires_at REAL,
        expires_at REAL
    )""",
    """CREATE TABLE IF NOT EXISTS celeriac_chord_part (
        group_id TEXT NOT NULL,
        member TEXT NOT NULL,
        task_id TEXT NOT NULL,
        group_index INTEGER,
        state TEXT NOT NULL,
        result TEXT NOT NULL,
        PRIMARY KEY (group_id, member)
    )""",
    """CREATE TABLE IF NOT EXISTS celeriac_group_meta (
        group_id TEXT PRIMARY KEY,
        meta TEXT NOT NULL,
        expires_at REAL
    )""",
    "CREATE INDEX IF NOT EXISTS celeriac_chord_expiry ON celeriac_chord (expires_at)",
)


def create_schema(conn: sqlite3.Connection) -> None:
    """The broker module's result tables, plus the chord and group tables kept here."""
    create_result_schema(conn)
    for statement in CHORD_SCHEMA:
        conn.execute(statement)


class SqliteBackend:
    def __init__(self, url: str, settings: Settings, client_name: str = "celeriac") -> None:
        self.url = url
        options = dict(settings.result_backend_transport_options or {})
        # sqlite://:memory: is allowed here: results that live and die with this process
        self.path = database_path(url, role="result backend", allow_memory=True)
        self._db = Database(
            self.path,
            role="result backend",
            error=BackendError,
            create_schema=create_schema,
            busy_timeout_s=float(options.get("busy_timeout", DEFAULT_BUSY_TIMEOUT_S)),
        )
        self._next_cleanup = 0.0
        self._chord_expires_s = chord_expires_s(settings)

    @property
    def database(self) -> Database:
        return self._db

    def store(self, task_id: str, meta: Meta, expires_s: float | None) -> None:
        payload = dumps_json(meta)
        now = time.time()
        expires_at = now + float(expires_s) if expires_s else None
        with self._db.write() as conn:
            conn.execute(UPSERT, (task_id, payload, now, expires_at))
            if now >= self._next_cleanup:
                deleted = conn.execute(DELETE_EXPIRED, (now, CLEANUP_BATCH)).rowcount
                # a full batch: more are waiting, so the next store deletes again (expired
                # rows go as fast as new ones come); else look again within half the expiry
                every = min(CLEANUP_EVERY_S, max(0.5, expires_s / 2)) if expires_s else None
                self._next_cleanup = (
                    now if deleted >= CLEANUP_BATCH else now + (every or CLEANUP_EVERY_S)
                )
        local_signal(self.path).notify()

    def purge_expired(self, now_s: float | None = None) -> int:
        """Delete up to a batch of expired results now; returns how many went."""
        now = time.time() if now_s is None else now_s
        with self._db.write() as conn:
            return int(conn.execute(DELETE_EXPIRED, (now, CLEANUP_BATCH)).rowcount)

    def get_meta(self, task_id: str) -> Meta | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT meta FROM celeriac_task_meta WHERE task_id = ? "
                "AND (expires_at IS NULL OR expires_at > ?)",
                (task_id, time.time()),
            ).fetchone()
        return None if row is None else _decode(row[0])

    def get_many(self, task_ids: Sequence[str]) -> dict[str, Meta]:
        found: dict[str, Meta] = {}
        now = time.time()
        ids = list(task_ids)
        with self._db.read() as conn:
            for start in range(0, len(ids), 500):  # under SQLite's bound-parameter limit
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT task_id, meta FROM celeriac_task_meta WHERE task_id IN ({marks}) "
                    "AND (expires_at IS NULL OR expires_at > ?)",
                    (*chunk, now),
                ).fetchall()
                found.update((str(tid), _decode(meta)) for tid, meta in rows)
        return found

    def wait_for(self, task_id: str, timeout_s: float | None, interval_s: float = 0.5) -> Meta:
        """The meta once the task is ready; reads again only after a commit somewhere."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        poll = AdaptivePoll(max_s=min(MAX_POLL_S, max(MIN_POLL_S, interval_s)))
        seen: tuple[int, int] | None = None
        while True:
            signal = local_signal(self.path)
            mark = (self._db.data_version(), signal.generation)
            if mark != seen:
                seen = mark
                meta = self.get_meta(task_id)
                if meta is not None and meta.get("status") in states.READY_STATES:
                    return meta
            remaining = 3600.0 if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"result of {task_id} not ready in time; is a worker consuming its queue? "
                    f"(`celeriac inspect` or the worker log tells)"
                )
            signal.wait(mark[1], poll.next_delay(remaining))

    def forget(self, task_id: str) -> None:
        with self._db.write() as conn:
            conn.execute("DELETE FROM celeriac_task_meta WHERE task_id = ?", (task_id,))

    # groups
    def save_group(self, group_id: str, meta: Meta, expires_s: float | None) -> None:
        expires_at = time.time() + float(expires_s) if expires_s else None
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO celeriac_group_meta (group_id, meta, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (group_id) DO UPDATE SET meta = excluded.meta, "
                "expires_at = excluded.expires_at",
                (group_id, dumps_json(meta), expires_at),
            )
        local_signal(self.path).notify()

    def get_group(self, group_id: str) -> Meta | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT meta FROM celeriac_group_meta WHERE group_id = ? "
                "AND (expires_at IS NULL OR expires_at > ?)",
                (group_id, time.time()),
            ).fetchone()
        return None if row is None else _decode(row[0])

    def delete_group(self, group_id: str) -> None:
        with self._db.write() as conn:
            conn.execute("DELETE FROM celeriac_group_meta WHERE group_id = ?", (group_id,))

    # chords
    def set_chord_size(self, group_id: str, size: int) -> None:
        now = time.time()
        with self._db.write() as conn:
            _purge_expired_chords(conn, now)
            conn.execute(
                "INSERT INTO celeriac_chord (group_id, size, marker, expires_at) "
                "VALUES (?, ?, NULL, ?) ON CONFLICT (group_id) DO UPDATE SET "
                "size = excluded.size, marker = NULL, expires_at = excluded.expires_at",
                (group_id, int(size), self._expiry(now)),
            )

    def add_to_chord(self, group_id: str) -> None:
        now = time.time()
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO celeriac_chord (group_id, extra, expires_at) VALUES (?, 1, ?) "
                "ON CONFLICT (group_id) DO UPDATE SET extra = extra + 1",
                (group_id, self._expiry(now)),
            )

    def on_chord_part_return(self, part: ChordPart) -> ChordClaim | None:
        gid = part.group_id
        now = time.time()
        with self._db.write() as conn:
            row = conn.execute(
                "SELECT size, extra, marker, marker_expires_at FROM celeriac_chord "
                "WHERE group_id = ?",
                (gid,),
            ).fetchone()
            marker = _live_marker(row, now)
            if marker == "done":
                return None
            if row is None:  # a part that beat the client's size: count it anyway
                conn.execute(
                    "INSERT INTO celeriac_chord (group_id, expires_at) VALUES (?, ?)",
                    (gid, self._expiry(now)),
                )
            conn.execute(
                "INSERT OR IGNORE INTO celeriac_chord_part "
                "(group_id, member, task_id, group_index, state, result) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    gid,
                    _member(part),
                    part.task_id,
                    part.group_index,
                    part.state,
                    dumps_json(part.result),
                ),
            )
            conn.execute(
                "UPDATE celeriac_chord SET expires_at = ? WHERE group_id = ?",
                (self._expiry(now), gid),
            )
            count = int(
                conn.execute(
                    "SELECT COUNT(*) FROM celeriac_chord_part WHERE group_id = ?", (gid,)
                ).fetchone()[0]
            )
            size = None if row is None else row[0]
            complete = size is not None and count == int(size) + int(row[1] or 0)
            step = chord_next_step(
                marker=marker,
                complete=complete,
                part_failed=part.failed,
                size_known=size is not None,
            )
            if step == "cleanup":
                _mark_done(conn, gid, now)
                return None
            if step != "claim":
                return None
            token = uuid.uuid4().hex
            conn.execute(
                "UPDATE celeriac_chord SET marker = ?, marker_expires_at = ? WHERE group_id = ?",
                (token, now + CHORD_CLAIM_S, gid),
            )
            parts = _read_parts(conn, gid) if complete else []
        return ChordClaim(gid, token, complete, parts)

    def finish_chord(self, claim: ChordClaim, failed: bool) -> None:
        gid = claim.group_id
        now = time.time()
        with self._db.write() as conn:
            row = conn.execute(
                "SELECT size, extra, marker FROM celeriac_chord WHERE group_id = ?", (gid,)
            ).fetchone()
            if row is None or row[2] != claim.token:
                logger.warning("chord %s: the claim expired before it was released", gid)
                return
            count = int(
                conn.execute(
                    "SELECT COUNT(*) FROM celeriac_chord_part WHERE group_id = ?", (gid,)
                ).fetchone()[0]
            )
            complete = row[0] is not None and count == int(row[0]) + int(row[1] or 0)
            if failed and not complete:
                conn.execute(
                    "UPDATE celeriac_chord SET marker = 'failed', marker_expires_at = NULL "
                    "WHERE group_id = ?",
                    (gid,),
                )
                return
            _mark_done(conn, gid, now)

    def _expiry(self, now: float) -> float | None:
        return now + self._chord_expires_s if self._chord_expires_s else None

    def close(self) -> None:
        self._db.close()


def _member(part: ChordPart) -> str:
    """Celery's dedupe key: ``<task_id>:<group_index>``."""
    index = "+inf" if part.group_index is None else str(int(part.group_index))
    return f"{part.task_id}:{index}"


def _live_marker(row: Any, now: float) -> str | None:
    """The claim marker, treating an expired claim (its holder died) as absent."""
    if row is None or row[2] is None:
        return None
    marker = str(row[2])
    if marker in ("done", "failed"):
        return marker
    expires_at = row[3]
    return None if expires_at is not None and expires_at <= now else marker


def _mark_done(conn: sqlite3.Connection, group_id: str, now: float) -> None:
    """Drop the parts and keep only the ``done`` marker, for late duplicates."""
    conn.execute("DELETE FROM celeriac_chord_part WHERE group_id = ?", (group_id,))
    conn.execute(
        "UPDATE celeriac_chord SET size = NULL, extra = 0, marker = 'done', "
        "marker_expires_at = NULL, expires_at = ? WHERE group_id = ?",
        (now + CHORD_DONE_S, group_id),
    )


def _read_parts(conn: sqlite3.Connection, group_id: str) -> list[ChordPart]:
    rows = conn.execute(
        "SELECT task_id, group_index, state, result FROM celeriac_chord_part "
        "WHERE group_id = ? ORDER BY group_index IS NULL, group_index, rowid",
        (group_id,),
    ).fetchall()
    return [
        ChordPart(group_id, str(tid), index, str(state), orjson.loads(result))
        for tid, index, state, result in rows
    ]


def _purge_expired_chords(conn: sqlite3.Connection, now: float) -> None:
    expired = "SELECT group_id FROM celeriac_chord WHERE expires_at IS NOT NULL AND expires_at <= ?"
    conn.execute(f"DELETE FROM celeriac_chord_part WHERE group_id IN ({expired})", (now,))
    conn.execute(
        "DELETE FROM celeriac_chord WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
    )


_decode = decode_meta
