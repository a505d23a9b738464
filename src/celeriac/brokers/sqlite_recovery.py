"""Putting claimed messages back: requeue, a dead owner's claims, and expired leases.

Every path ends in ``release_rows``: each row goes back to the front (or the back) of its
priority bucket, marked redelivered, unless its claimers died more than
``task_max_redeliveries`` times, in which case it goes to the dead letters, so a task that
kills its worker cannot loop forever. These functions run inside the caller's
``BEGIN IMMEDIATE`` transaction.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Collection, Sequence

from ..protocol import mark_redelivered

logger = logging.getLogger(__name__)

# id, queue, step, body, losses
ClaimedRow = tuple[int, str, int, bytes, int]
_COLUMNS = "id, queue, step, body, losses"

FRONT_POS = """
    SELECT COALESCE(MIN(pos) - 1, 0) FROM celeriac_messages
    WHERE state = 0 AND queue = ? AND step = ?
"""
_BACK_POS = """
    SELECT COALESCE(MAX(pos) + 1, 0) FROM celeriac_messages
    WHERE state = 0 AND queue = ? AND step = ?
"""
_RELEASE = """
    UPDATE celeriac_messages
    SET state = 0, pos = ?, body = ?, losses = ?, owner = NULL, owner_pid = NULL,
        claimed_at = NULL, lease_until = NULL
    WHERE id = ?
"""


def redelivered(body: bytes) -> bytes:
    """The envelope with kombu's ``redelivered`` flag, or the bytes as they were if not JSON."""
    try:
        return mark_redelivered(body)
    except (ValueError, TypeError, AttributeError):
        return body


def rows_by_claim(conn: sqlite3.Connection, claims: Sequence[tuple[int, int]]) -> list[ClaimedRow]:
    """The rows still held under these (id, claim number) pairs, in the order given."""
    rows = []
    for claim in claims:
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM celeriac_messages "
            "WHERE id = ? AND deliveries = ? AND state = 1",
            claim,
        ).fetchone()
        if row is not None:
            rows.append(row)
    return rows


def rows_of_owner(conn: sqlite3.Connection, owner: str) -> list[ClaimedRow]:
    """Everything *owner* holds, latest claim first (so, put back to the front one by one,
    the oldest ends up next in line)."""
    return conn.execute(
        f"SELECT {_COLUMNS} FROM celeriac_messages WHERE state = 1 AND owner = ? "
        "ORDER BY claimed_at DESC, id DESC",
        (owner,),
    ).fetchall()


def rows_past_lease(conn: sqlite3.Connection, cutoff: float, limit: int) -> list[ClaimedRow]:
    """Claims whose lease ended at or before *cutoff*, latest claim first."""
    return conn.execute(
        f"SELECT {_COLUMNS} FROM celeriac_messages WHERE state = 1 AND lease_until <= ? "
        "ORDER BY lease_until DESC, id DESC LIMIT ?",
        (cutoff, limit),
    ).fetchall()


def release_rows(
    conn: sqlite3.Connection,
    rows: Sequence[ClaimedRow],
    *,
    to_front: bool,
    max_losses: int | None,
    now: float,
    spared: Collection[int] = (),
) -> tuple[int, int]:
    """Put *rows* back on their queues; with *max_losses*, count each as a loss, but for
    the ids in *spared* (known never started).

    Returns (restored, dead-lettered)."""
    restored = dead = 0
    for row_id, queue, step, body, losses in rows:
        if max_losses is not None and row_id not in spared:
            losses += 1
            if losses > max_losses:
                reason = (
                    f"its worker died {losses} times while holding it "
                    f"(task_max_redeliveries={max_losses})"
                )
                conn.execute(
                    "INSERT INTO celeriac_dead_letters (queue, reason, time, body) "
                    "VALUES (?, ?, ?, ?)",
                    (queue, reason, now, body),
                )
                conn.execute("DELETE FROM celeriac_messages WHERE id = ?", (row_id,))
                dead += 1
                continue
        pos = conn.execute(FRONT_POS if to_front else _BACK_POS, (queue, step)).fetchone()[0]
        conn.execute(_RELEASE, (pos, redelivered(bytes(body)), losses, row_id))
        restored += 1
    return restored, dead


def beat(conn: sqlite3.Connection, owners: Sequence[str], now: float, lease_until: float) -> None:
    """Record *owners* alive, and extend the lease of what they hold, so a long task of a
    live worker is never handed to another."""
    conn.executemany(
        "INSERT INTO celeriac_heartbeats (owner, beat_at) VALUES (?, ?) "
        "ON CONFLICT (owner) DO UPDATE SET beat_at = excluded.beat_at",
        [(owner, now) for owner in owners],
    )
    marks = ",".join("?" * len(owners))
    conn.execute(
        f"UPDATE celeriac_messages SET lease_until = ? WHERE state = 1 AND owner IN ({marks})",
        (lease_until, *owners),
    )


def silent_owners(conn: sqlite3.Connection, beat_before: float) -> list[str]:
    rows = conn.execute(
        "SELECT owner FROM celeriac_heartbeats WHERE beat_at <= ?", (beat_before,)
    ).fetchall()
    return [str(owner) for (owner,) in rows]


def forget_owner(conn: sqlite3.Connection, owner: str) -> None:
    conn.execute("DELETE FROM celeriac_heartbeats WHERE owner = ?", (owner,))
    conn.execute("DELETE FROM celeriac_idle WHERE owner = ?", (owner,))


def note_idle(conn: sqlite3.Connection, owner: str, started_ids: Collection[int] | None) -> None:
    """Record what *owner* holds but has not started (None: not known, record nothing)."""
    conn.execute("DELETE FROM celeriac_idle WHERE owner = ?", (owner,))
    if started_ids is None:
        return
    held = conn.execute(
        "SELECT id FROM celeriac_messages WHERE state = 1 AND owner = ?", (owner,)
    ).fetchall()
    conn.executemany(
        "INSERT INTO celeriac_idle (owner, id) VALUES (?, ?)",
        [(owner, row_id) for (row_id,) in held if row_id not in started_ids],
    )


def idle_ids(conn: sqlite3.Connection, owner: str) -> set[int]:
    rows = conn.execute("SELECT id FROM celeriac_idle WHERE owner = ?", (owner,)).fetchall()
    return {int(row_id) for (row_id,) in rows}
