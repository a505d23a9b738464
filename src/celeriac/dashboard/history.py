"""The dashboard's task history, kept in the result backend so a restart forgets nothing.

Records are JSON objects keyed by task id. Redis keeps them in one hash and orders them in
a sorted set by first sight; SQLite keeps them in a table of the backend's own file. Both
drop the oldest records beyond ``dashboard_max_tasks``.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from typing import Any, Protocol

import orjson

logger = logging.getLogger(__name__)

HASH_KEY = "celeriac:dashboard:tasks"
ORDER_KEY = "celeriac:dashboard:order"
SQLITE_SCHEMA = """
    CREATE TABLE IF NOT EXISTS celeriac_dashboard_tasks (
        task_id TEXT PRIMARY KEY,
        first_seen REAL NOT NULL,
        record BLOB NOT NULL
    )
"""

Record = dict[str, Any]


class History(Protocol):
    where: str

    def load(self, limit: int) -> list[Record]:
        """The newest *limit* records, oldest first."""

    def save(self, records: Mapping[str, Record], max_tasks: int) -> None:
        """Store (or replace) *records*, then forget the oldest beyond *max_tasks*."""


class MemoryHistory:
    where = "memory (this backend keeps no history: it is lost when the dashboard stops)"

    def load(self, limit: int) -> list[Record]:
        return []

    def save(self, records: Mapping[str, Record], max_tasks: int) -> None:
        return None


class RedisHistory:
    where = "the Redis result backend"

    def __init__(self, client: Any) -> None:
        self.client = client

    def load(self, limit: int) -> list[Record]:
        ids = self.client.zrange(ORDER_KEY, -limit, -1) if limit > 0 else []
        if not ids:
            return []
        raws = self.client.hmget(HASH_KEY, ids)
        return [orjson.loads(raw) for raw in raws if raw]

    def save(self, records: Mapping[str, Record], max_tasks: int) -> None:
        if not records:
            return
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(HASH_KEY, mapping={k: orjson.dumps(v) for k, v in records.items()})
        pipe.zadd(ORDER_KEY, {k: float(v.get("first_seen") or 0) for k, v in records.items()})
        pipe.zcard(ORDER_KEY)
        count = int(pipe.execute()[-1])
        if count > max_tasks:
            old = self.client.zpopmin(ORDER_KEY, count - max_tasks)
            if old:
                self.client.hdel(HASH_KEY, *[member for member, _score in old])


class SQLiteHistory:
    where = "the SQLite result backend"

    def __init__(self, database: Any) -> None:
        self.database = database
        with self.database.write() as conn:
            conn.execute(SQLITE_SCHEMA)

    def load(self, limit: int) -> list[Record]:
        with self.database.read() as conn:
            rows = conn.execute(
                "SELECT record FROM celeriac_dashboard_tasks ORDER BY first_seen DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [orjson.loads(bytes(row[0])) for row in reversed(rows)]

    def save(self, records: Mapping[str, Record], max_tasks: int) -> None:
        if not records:
            return
        rows = [(k, float(v.get("first_seen") or 0), orjson.dumps(v)) for k, v in records.items()]
        with self.database.write() as conn:
            conn.executemany(
                "INSERT INTO celeriac_dashboard_tasks (task_id, first_seen, record) "
                "VALUES (?, ?, ?) ON CONFLICT(task_id) DO UPDATE SET record = excluded.record",
                rows,
            )
            _trim(conn, max_tasks)


def _trim(conn: sqlite3.Connection, max_tasks: int) -> None:
    conn.execute(
        "DELETE FROM celeriac_dashboard_tasks WHERE task_id NOT IN ("
        "SELECT task_id FROM celeriac_dashboard_tasks ORDER BY first_seen DESC LIMIT ?)",
        (max_tasks,),
    )


def history_for(backend: Any) -> History:
    """The history store for *backend* (an app's result backend, or None)."""
    database = getattr(backend, "database", None)
    if database is not None and hasattr(database, "write"):
        return SQLiteHistory(database)
    try:
        client = getattr(backend, "client", None)
    except Exception:  # a backend that cannot connect yet still gets a Redis history
        client = None
    if client is not None and hasattr(client, "zadd"):
        return RedisHistory(client)
    return MemoryHistory()
