"""The tables of the embedded SQLite broker and result backend.

Every name starts with ``celeriac_`` because the result backend shares the broker's file by
default (``result_backend`` falls back to ``broker_url``), and a user may point both at a
file that holds other tables too.
"""

from __future__ import annotations

import sqlite3

from ..errors import ConfigurationError

# columns the code relies on, checked at open: a file made by another celeriac version
# fails with a clear message instead of "no such column" in the middle of a fetch
BROKER_COLUMNS = {
    "celeriac_messages": {"pos", "state", "deliveries", "losses", "owner", "lease_until"},
}
RESULT_COLUMNS = {"celeriac_task_meta": {"task_id", "meta", "expires_at"}}

BROKER_SCHEMA = (
    # One row per message, ready (state 0) or claimed (state 1). ``pos`` orders the ready
    # rows of one (queue, step): publish appends after the largest, a requeue to the front
    # goes before the smallest. ``deliveries`` numbers the claims, so a receipt
    # "<id>:<deliveries>" names one claim; AUTOINCREMENT never reuses an id, so an old
    # receipt cannot name a newer message.
    """
    CREATE TABLE IF NOT EXISTS celeriac_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        queue TEXT NOT NULL,
        step INTEGER NOT NULL,
        priority INTEGER NOT NULL,
        pos INTEGER NOT NULL,
        state INTEGER NOT NULL DEFAULT 0,
        deliveries INTEGER NOT NULL DEFAULT 0,
        losses INTEGER NOT NULL DEFAULT 0,
        published_at REAL NOT NULL,
        owner TEXT,
        owner_pid INTEGER,
        claimed_at REAL,
        lease_until REAL,
        body BLOB NOT NULL
    )
    """,
    # ``losses`` counts the times a claimer died holding the message (task_max_redeliveries)
    # the claim reads ready rows of one queue in (step, pos) order straight off this index
    """
    CREATE INDEX IF NOT EXISTS celeriac_messages_ready
        ON celeriac_messages (state, queue, step, pos)
    """,
    # expired leases, and the claims of one owner, without scanning ready rows
    """
    CREATE INDEX IF NOT EXISTS celeriac_messages_lease
        ON celeriac_messages (lease_until) WHERE state = 1
    """,
    """
    CREATE INDEX IF NOT EXISTS celeriac_messages_owner
        ON celeriac_messages (owner) WHERE state = 1
    """,
    # ETA / countdown messages parked until due (never in a worker's memory)
    """
    CREATE TABLE IF NOT EXISTS celeriac_delayed (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        due REAL NOT NULL,
        queue TEXT NOT NULL,
        priority INTEGER NOT NULL,
        body BLOB NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS celeriac_delayed_due ON celeriac_delayed (due, id)",
    """
    CREATE TABLE IF NOT EXISTS celeriac_dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        queue TEXT NOT NULL,
        reason TEXT NOT NULL,
        time REAL NOT NULL,
        body BLOB NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS celeriac_dead_letters_queue ON celeriac_dead_letters (queue, id)",
    # the last beat of each live owner (a consuming process): silent ones get recovered
    """
    CREATE TABLE IF NOT EXISTS celeriac_heartbeats (
        owner TEXT PRIMARY KEY,
        beat_at REAL NOT NULL
    ) WITHOUT ROWID
    """,
    # what each owner held but had not started at its last beat: if it dies, those go back
    # without counting a loss
    """
    CREATE TABLE IF NOT EXISTS celeriac_idle (
        owner TEXT NOT NULL,
        id INTEGER NOT NULL,
        PRIMARY KEY (owner, id)
    ) WITHOUT ROWID
    """,
    # revoked task ids, so every worker (and one started later) skips them
    """
    CREATE TABLE IF NOT EXISTS celeriac_revoked (
        task_id TEXT PRIMARY KEY,
        expires_at REAL NOT NULL
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE IF NOT EXISTS celeriac_counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID
    """,
)

RESULT_SCHEMA = (
    # the meta JSON is the exact value the Redis backend keeps at celery-task-meta-<id>
    """
    CREATE TABLE IF NOT EXISTS celeriac_task_meta (
        task_id TEXT PRIMARY KEY,
        meta BLOB NOT NULL,
        stored_at REAL NOT NULL,
        expires_at REAL
    ) WITHOUT ROWID
    """,
    """
    CREATE INDEX IF NOT EXISTS celeriac_task_meta_expires
        ON celeriac_task_meta (expires_at) WHERE expires_at IS NOT NULL
    """,
)


def create_broker_schema(conn: sqlite3.Connection) -> None:
    _create(conn, BROKER_SCHEMA, BROKER_COLUMNS)


def create_result_schema(conn: sqlite3.Connection) -> None:
    _create(conn, RESULT_SCHEMA, RESULT_COLUMNS)


def _create(
    conn: sqlite3.Connection, statements: tuple[str, ...], columns: dict[str, set[str]]
) -> None:
    # tables first, then the column check, then indexes (which would name missing columns)
    tables = [s for s in statements if "CREATE TABLE" in s]
    for statement in tables:
        conn.execute(statement)
    _require_columns(conn, columns)
    for statement in statements:
        if statement not in tables:
            conn.execute(statement)


def _require_columns(conn: sqlite3.Connection, wanted: dict[str, set[str]]) -> None:
    for table, columns in wanted.items():
        found = {str(row[1]) for row in conn.execute(f"PRAGMA table_info({table})")}
        missing = columns - found
        if missing:
            path = conn.execute("PRAGMA database_list").fetchone()[2]
            raise ConfigurationError(
                f"table {table} in {path} lacks column(s) {', '.join(sorted(missing))}: the "
                f"file was made by another celeriac version; point the URL at a new file, "
                f"or delete this one once its queues are drained"
            )
