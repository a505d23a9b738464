"""Revoked task ids in the SQLite broker's file, so every worker on the machine (and one
started later) skips them. A version counter lets workers re-read the set only when it
changed."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

VERSION = "revoked_version"


def add_revoked(
    conn: sqlite3.Connection, task_ids: Sequence[str], ttl_s: float, now: float
) -> None:
    conn.executemany(
        "INSERT INTO celeriac_revoked (task_id, expires_at) VALUES (?, ?) "
        "ON CONFLICT (task_id) DO UPDATE SET expires_at = excluded.expires_at",
        [(task_id, now + ttl_s) for task_id in task_ids],
    )
    conn.execute("DELETE FROM celeriac_revoked WHERE expires_at <= ?", (now,))
    conn.execute(
        "INSERT INTO celeriac_counters (name, value) VALUES (?, 1) "
        "ON CONFLICT (name) DO UPDATE SET value = value + 1",
        (VERSION,),
    )


def revoked_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM celeriac_counters WHERE name = ?", (VERSION,)).fetchone()
    return 0 if row is None else int(row[0])


def revoked_ids(conn: sqlite3.Connection, now: float) -> set[str]:
    rows = conn.execute("SELECT task_id FROM celeriac_revoked WHERE expires_at > ?", (now,))
    return {str(task_id) for (task_id,) in rows}
