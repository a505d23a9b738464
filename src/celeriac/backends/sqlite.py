"""The embedded SQLite result backend (``sqlite:///path``): results next to the broker's queues.

One row per task id in ``celeriac_task_meta`` holding the same meta JSON that the Redis
backend keeps at ``celery-task-meta-<id>``. Expired rows are never returned, and are deleted
lazily: a store deletes the expired rows at most once a minute per process.

``wait_for`` polls as the broker's fetch does (sqlite_wait): it reads the row again only
when another connection has committed, pausing 1 ms at first and up to 50 ms (or the
caller's *interval_s*, if shorter); a store in the same process wakes it at once.
"""

from __future__ import annotations

import logging
import time

import orjson

from .. import states
from ..brokers.sqlite_db import DEFAULT_BUSY_TIMEOUT_S, Database, database_path
from ..brokers.sqlite_schema import create_result_schema
from ..brokers.sqlite_wait import MAX_POLL_S, MIN_POLL_S, AdaptivePoll, local_signal
from ..config import Settings
from ..errors import BackendError, TimeoutError
from ..serialization import dumps_json
from .base import Meta

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
            create_schema=create_result_schema,
            busy_timeout_s=float(options.get("busy_timeout", DEFAULT_BUSY_TIMEOUT_S)),
        )
        self._next_cleanup = 0.0

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
                self._next_cleanup = now + CLEANUP_EVERY_S
                conn.execute(DELETE_EXPIRED, (now, CLEANUP_BATCH))
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

    def close(self) -> None:
        self._db.close()


def _decode(data: bytes | str) -> Meta:
    try:
        meta = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BackendError(f"stored result is not JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise BackendError("stored result is not a JSON object")
    return meta
