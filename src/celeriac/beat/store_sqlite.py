"""The beat store in the SQLite broker's file: four small tables, each change one
``BEGIN IMMEDIATE`` transaction, so a compare-and-set is atomic across processes."""

from __future__ import annotations

import sqlite3

from ..brokers.sqlite_db import Database, database_path
from ..errors import BrokerError
from .store import Pending, pending_from_text, pending_text

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS celeriac_beat_last (name TEXT PRIMARY KEY, slot TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS celeriac_beat_pending (
        name TEXT NOT NULL, slot TEXT NOT NULL, claim TEXT NOT NULL, lease_until REAL NOT NULL,
        PRIMARY KEY (name, slot))""",
    """CREATE TABLE IF NOT EXISTS celeriac_beat_entries (
        name TEXT PRIMARY KEY, definition TEXT NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS celeriac_beat_paused (name TEXT PRIMARY KEY)",
)


def _create_schema(conn: sqlite3.Connection) -> None:
    for statement in SCHEMA:
        conn.execute(statement)


class SqliteBeatStore:
    def __init__(self, url: str) -> None:
        self.url = url
        path = database_path(url, role="broker", allow_memory=False)
        self._db = Database(path, role="beat", error=BrokerError, create_schema=_create_schema)

    def last_slots(self) -> dict[str, str]:
        with self._db.read() as conn:
            return dict(conn.execute("SELECT name, slot FROM celeriac_beat_last").fetchall())

    def claim(self, name: str, expected: str | None, slot: str, pending: Pending | None) -> bool:
        with self._db.write() as conn:
            row = conn.execute("SELECT slot FROM celeriac_beat_last WHERE name = ?", (name,))
            found = row.fetchone()
            if (found[0] if found else None) != expected:
                return False
            conn.execute(
                "INSERT INTO celeriac_beat_last (name, slot) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET slot = excluded.slot",
                (name, slot),
            )
            if pending is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO celeriac_beat_pending VALUES (?, ?, ?, ?)",
                    (name, slot, pending_text(pending), pending.lease_until_s),
                )
            return True

    def confirm(self, name: str, slot: str) -> None:
        with self._db.write() as conn:
            conn.execute(
                "DELETE FROM celeriac_beat_pending WHERE name = ? AND slot = ?", (name, slot)
            )

    def expired(self, now_s: float) -> list[Pending]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT name, slot, claim FROM celeriac_beat_pending WHERE lease_until < ?",
                (now_s,),
            ).fetchall()
        return [pending_from_text(name, slot, text) for name, slot, text in rows]

    def take_over(self, claim: Pending, now_s: float) -> bool:
        with self._db.write() as conn:
            changed = conn.execute(
                "UPDATE celeriac_beat_pending SET claim = ?, lease_until = ? "
                "WHERE name = ? AND slot = ? AND lease_until < ?",
                (pending_text(claim), claim.lease_until_s, claim.name, claim.slot, now_s),
            ).rowcount
        return changed == 1

    def entries(self) -> dict[str, str]:
        with self._db.read() as conn:
            rows = conn.execute("SELECT name, definition FROM celeriac_beat_entries")
            return dict(rows.fetchall())

    def put_entry(self, name: str, definition: str) -> None:
        with self._db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO celeriac_beat_entries VALUES (?, ?)", (name, definition)
            )

    def delete_entry(self, name: str) -> bool:
        with self._db.write() as conn:
            count = conn.execute("DELETE FROM celeriac_beat_entries WHERE name = ?", (name,))
            return count.rowcount == 1

    def paused(self) -> set[str]:
        with self._db.read() as conn:
            return {row[0] for row in conn.execute("SELECT name FROM celeriac_beat_paused")}

    def set_paused(self, name: str, is_paused: bool) -> None:
        with self._db.write() as conn:
            if is_paused:
                conn.execute("INSERT OR IGNORE INTO celeriac_beat_paused VALUES (?)", (name,))
            else:
                conn.execute("DELETE FROM celeriac_beat_paused WHERE name = ?", (name,))

    def forget(self, name: str) -> None:
        with self._db.write() as conn:
            conn.execute("DELETE FROM celeriac_beat_last WHERE name = ?", (name,))

    def close(self) -> None:
        self._db.close()
