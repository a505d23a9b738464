"""Flow state in the SQLite broker's database: every step one ``BEGIN IMMEDIATE``
transaction, so the processes sharing the file never race. Same model as the Redis store:
a reserved-token bucket, slot leases an owner's heartbeat renews, waiters a release wakes by
moving their parked message's due time to now."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

from ..brokers.base import Delivery
from ..brokers.sqlite_db import Database
from ..errors import BrokerError
from .store_base import CAP_RECHECK_S

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS celeriac_flow_bucket (bucket TEXT PRIMARY KEY, tat REAL)",
    "CREATE TABLE IF NOT EXISTS celeriac_flow_reserved (task TEXT, ticket TEXT, bucket TEXT, "
    "at REAL, PRIMARY KEY (task, ticket))",
    "CREATE TABLE IF NOT EXISTS celeriac_flow_slot (slots TEXT, member TEXT, owner TEXT, "
    "expires REAL, PRIMARY KEY (slots, member))",
    "CREATE TABLE IF NOT EXISTS celeriac_flow_waiter (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "slots TEXT, body BLOB, task TEXT, ticket TEXT, until REAL)",
    "CREATE TABLE IF NOT EXISTS celeriac_flow_unique (lock TEXT PRIMARY KEY, task_id TEXT, "
    "owner TEXT, expires REAL)",
)


def _create_schema(conn: sqlite3.Connection) -> None:
    for statement in SCHEMA:
        conn.execute(statement)


class SqliteFlowStore:
    def __init__(self, path: str) -> None:
        self._db = Database(path, role="broker", error=BrokerError, create_schema=_create_schema)

    def take(
        self,
        bucket: str,
        ticket: str,
        task_name: str,
        interval_s: float,
        now_s: float,
        horizon_s: float | None = None,
    ) -> float:
        with self._db.write() as conn:
            row = conn.execute(
                "SELECT at FROM celeriac_flow_reserved WHERE task = ? AND ticket = ?",
                (task_name, ticket),
            ).fetchone()
            if row is not None:
                if row[0] > now_s + 0.005:
                    return float(row[0])
                conn.execute(
                    "DELETE FROM celeriac_flow_reserved WHERE task = ? AND ticket = ?",
                    (task_name, ticket),
                )
                return 0.0
            found = conn.execute(
                "SELECT tat FROM celeriac_flow_bucket WHERE bucket = ?", (bucket,)
            ).fetchone()
            tat = max(float(found[0]) if found else 0.0, now_s)
            if horizon_s is not None and tat - now_s > horizon_s:
                return horizon_s - tat
            conn.execute(
                "INSERT OR REPLACE INTO celeriac_flow_bucket (bucket, tat) VALUES (?, ?)",
                (bucket, tat + interval_s),
            )
            if tat <= now_s:
                return 0.0
            conn.execute(
                "INSERT INTO celeriac_flow_reserved (bucket, ticket, task, at) VALUES (?, ?, ?, ?)",
                (bucket, ticket, task_name, tat),
            )
            return tat

    def acquire(
        self, slots: str, member: str, owner: str, limit: int, ttl_s: float, now_s: float
    ) -> bool:
        with self._db.write() as conn:
            conn.execute("DELETE FROM celeriac_flow_slot WHERE expires <= ?", (now_s,))
            mine = conn.execute(
                "SELECT 1 FROM celeriac_flow_slot WHERE slots = ? AND member = ?", (slots, member)
            ).fetchone()
            count = conn.execute(
                "SELECT COUNT(*) FROM celeriac_flow_slot WHERE slots = ?", (slots,)
            ).fetchone()[0]
            if not mine and count >= limit:
                return False
            conn.execute(
                "INSERT OR REPLACE INTO celeriac_flow_slot (slots, member, owner, expires) "
                "VALUES (?, ?, ?, ?)",
                (slots, member, owner, now_s + ttl_s),
            )
            return True

    def wait_for_slot(
        self, slots: str, limit: int, delivery: Delivery, task_name: str, ticket: str, now_s: float
    ) -> None:
        with self._db.write() as conn:
            conn.execute("DELETE FROM celeriac_flow_slot WHERE expires <= ?", (now_s,))
            count = conn.execute(
                "SELECT COUNT(*) FROM celeriac_flow_slot WHERE slots = ?", (slots,)
            ).fetchone()[0]
            if count < limit:  # a slot came free since we looked: wake it now
                _wake(conn, delivery.raw, now_s)
                return
            conn.execute(
                "INSERT INTO celeriac_flow_waiter (slots, body, task, ticket, until) "
                "VALUES (?, ?, ?, ?, ?)",
                (slots, delivery.raw, task_name, ticket, now_s + CAP_RECHECK_S),
            )

    def release(self, slots: str, member: str, owner: str, now_s: float) -> bool:
        with self._db.write() as conn:
            conn.execute(
                "DELETE FROM celeriac_flow_slot WHERE slots = ? AND member = ?", (slots, member)
            )
            while True:
                waiter = conn.execute(
                    "DELETE FROM celeriac_flow_waiter WHERE id = (SELECT MIN(id) FROM "
                    "celeriac_flow_waiter WHERE slots = ?) RETURNING body",
                    (slots,),
                ).fetchone()
                if waiter is None:
                    return False
                if _wake(conn, waiter[0], now_s):
                    return True

    def renew(self, owners: Sequence[str], ttl_s: float, now_s: float) -> None:
        if not owners:
            return
        marks = ",".join("?" * len(owners))
        with self._db.write() as conn:
            conn.execute(
                f"UPDATE celeriac_flow_slot SET expires = ? WHERE owner IN ({marks})",
                (now_s + ttl_s, *owners),
            )
            conn.execute(
                f"UPDATE celeriac_flow_unique SET expires = ? WHERE owner IN ({marks})",
                (now_s + ttl_s, *owners),
            )

    def claim_unique(self, lock: str, task_id: str, ttl_s: float) -> str | None:
        with self._db.write() as conn:
            row = conn.execute(
                "SELECT task_id, expires FROM celeriac_flow_unique WHERE lock = ?", (lock,)
            ).fetchone()
            now_s = time.time()
            if row is not None and row[1] > now_s:
                return None if row[0] == task_id else str(row[0])
            conn.execute(
                "INSERT OR REPLACE INTO celeriac_flow_unique (lock, task_id, owner, expires) "
                "VALUES (?, ?, NULL, ?)",
                (lock, task_id, now_s + ttl_s),
            )
            return None

    def hold_unique(self, lock: str, task_id: str, owner: str, ttl_s: float) -> None:
        with self._db.write() as conn:
            conn.execute(
                "UPDATE celeriac_flow_unique SET owner = ?, expires = ? "
                "WHERE lock = ? AND task_id = ?",
                (owner, time.time() + ttl_s, lock, task_id),
            )

    def release_unique(self, lock: str, task_id: str, owner: str) -> None:
        with self._db.write() as conn:
            conn.execute(
                "DELETE FROM celeriac_flow_unique WHERE lock = ? AND task_id = ?", (lock, task_id)
            )

    def parked(self, task_name: str, now_s: float) -> int:
        with self._db.read() as conn:
            rated = conn.execute(
                "SELECT COUNT(*) FROM celeriac_flow_reserved WHERE task = ? AND at > ?",
                (task_name, now_s - 1.0),
            ).fetchone()[0]
            capped = conn.execute(
                "SELECT COUNT(*) FROM celeriac_flow_waiter WHERE task = ? AND until > ?",
                (task_name, now_s - 1.0),
            ).fetchone()[0]
        return int(rated) + int(capped)

    def unparked(self, task_name: str, ticket: str) -> None:
        with self._db.write() as conn:
            conn.execute(
                "DELETE FROM celeriac_flow_waiter WHERE task = ? AND ticket = ?",
                (task_name, ticket),
            )


def _wake(conn: sqlite3.Connection, body: bytes, now_s: float) -> bool:
    """Make the parked copy of *body* due now; False when it is no longer parked."""
    moved = conn.execute(
        "UPDATE celeriac_delayed SET due = ? WHERE id = (SELECT id FROM celeriac_delayed "
        "WHERE body = ? LIMIT 1)",
        (now_s, body),
    )
    return moved.rowcount > 0
