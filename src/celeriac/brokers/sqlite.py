"""The embedded SQLite broker (``sqlite:///path``), the default when no broker is configured.

Each message is a row of ``celeriac_messages`` (layout in sqlite_schema), ready or claimed.

Claim: inside ``BEGIN IMMEDIATE`` (one writer at a time, across processes) the ready rows
are chosen in the Redis broker's order (priority bucket 0/3/6/9, then the queues in the
order given, then FIFO) and flipped to claimed by one ``UPDATE ... RETURNING``, so no two
consumers ever get the same message. A receipt is ``"<row id>:<claim number>"``: ack,
requeue, defer and dead_letter act only on the claim it names, so a consumer whose lease
ran out cannot disturb the copy another consumer holds now.

Lease: each claim records its owner (``owner_id``: one per consuming process) and pid.
A worker beats for its owners (``heartbeat``), which also extends their leases; ``recover``
puts back the claims of owners silent for ``worker_dead_after`` seconds, so a dead worker's
messages return in seconds. As a last resort a claim lasts
``broker_transport_options['visibility_timeout']`` seconds (3600 by default, as on Redis)
past its claim or its owner's last beat; then the next fetch of any consumer puts it back.
Put-back messages go to the front of their queue, marked redelivered; one whose claimers
died more than ``task_max_redeliveries`` times goes to the dead letters instead
(sqlite_recovery).

Waiting: fetch polls cheaply (see sqlite_wait): about 1 ms after activity, at most 50 ms
(``polling_interval``) when idle; a publish in the same process wakes it at once.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection, Mapping, Sequence

from ..config import Settings
from ..errors import BrokerError, ConfigurationError
from . import sqlite_recovery as recovery
from . import sqlite_revoked as revoked
from .base import DeadLetter, Delivery, message_priority, owner_id, priority_step
from .sqlite_db import DEFAULT_BUSY_TIMEOUT_S, Database, database_path
from .sqlite_schema import create_broker_schema
from .sqlite_wait import MAX_POLL_S, AdaptivePoll, local_signal

logger = logging.getLogger(__name__)

DEFAULT_VISIBILITY_TIMEOUT_S = 3600.0
MAX_SQL_VARIABLES = 500  # ids per statement, well under SQLite's limit

INSERT_READY = """
    INSERT INTO celeriac_messages (queue, step, priority, pos, published_at, body)
    VALUES (?, ?, ?, (SELECT COALESCE(MAX(pos), 0) + 1 FROM celeriac_messages
                      WHERE state = 0 AND queue = ? AND step = ?), ?, ?)
"""
SELECT_READY = """
    SELECT id, step, pos FROM celeriac_messages
    WHERE state = 0 AND queue = ? ORDER BY step, pos LIMIT ?
"""
CLAIM = """
    UPDATE celeriac_messages
    SET state = 1, deliveries = deliveries + 1, owner = ?, owner_pid = ?, claimed_at = ?,
        lease_until = ?
    WHERE state = 0 AND id IN ({marks})
    RETURNING id, queue, deliveries, body
"""
DELETE_CLAIM = "DELETE FROM celeriac_messages WHERE id = ? AND deliveries = ?"


def parse_receipt(receipt: str) -> tuple[int, int] | None:
    """(row id, claim number) from a receipt, or None for one this broker never gave out."""
    row_id, sep, claim = receipt.partition(":")
    if not sep:
        return None
    try:
        return int(row_id), int(claim)
    except ValueError:
        return None


def _claims(receipts: Sequence[str]) -> list[tuple[int, int]]:
    return [claim for claim in map(parse_receipt, receipts) if claim is not None]


class SqliteBroker:
    def __init__(self, url: str, settings: Settings, client_name: str = "celeriac") -> None:
        self.url = url
        options = dict(settings.broker_transport_options or {})
        self.visibility_timeout_s = float(
            options.get("visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT_S)
        )
        if self.visibility_timeout_s <= 0:
            raise ConfigurationError(
                f"broker_transport_options['visibility_timeout'] must be positive seconds, "
                f"got {self.visibility_timeout_s!r}"
            )
        self.owner = owner_id(client_name)
        self.path = database_path(url, role="broker", allow_memory=False)
        self._db = Database(
            self.path,
            role="broker",
            error=BrokerError,
            create_schema=create_broker_schema,
            busy_timeout_s=float(options.get("busy_timeout", DEFAULT_BUSY_TIMEOUT_S)),
        )
        self._max_losses = int(settings.task_max_redeliveries)
        self._poll = AdaptivePoll(max_s=float(options.get("polling_interval", MAX_POLL_S)))
        # look for expired leases this often; each look is one probe of a partial index
        self._sweep_every_s = min(1.0, max(0.05, self.visibility_timeout_s / 4))
        self._next_sweep = 0.0
        # (data_version, local generation, queues) at which the queues were last seen empty
        self._idle_mark: tuple[int, int, tuple[str, ...]] | None = None

    @property
    def database(self) -> Database:
        return self._db

    def _notify(self) -> None:
        local_signal(self.path).notify()

    # producing
    def publish(self, queue: str, envelope: bytes, priority: int = 0) -> None:
        self.publish_many([(queue, envelope, priority)])

    def publish_many(self, items: Sequence[tuple[str, bytes, int]]) -> None:
        now = time.time()
        rows = []
        for queue, envelope, priority in items:
            level = max(0, min(9, int(priority or 0)))
            step = priority_step(level)
            rows.append((queue, step, level, queue, step, now, bytes(envelope)))
        with self._db.write() as conn:
            conn.executemany(INSERT_READY, rows)
        self._notify()

    # consuming
    def fetch(
        self,
        queues: Sequence[str],
        max_count: int,
        timeout_s: float,
        acks: Sequence[str] = (),
    ) -> list[Delivery]:
        """Claim up to *max_count* messages, waiting up to *timeout_s* for the first one.
        Deferred *acks* are applied first."""
        if acks:
            self.ack(acks)
        names = tuple(dict.fromkeys(queues))
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            signal = local_signal(self.path)
            generation = signal.generation
            taken = self._look(names, max_count, generation) if names and max_count > 0 else []
            if taken:
                self._poll.activity()
                return taken
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            signal.wait(generation, self._poll.next_delay(remaining))

    def _look(self, queues: tuple[str, ...], max_count: int, generation: int) -> list[Delivery]:
        """One look: restore expired leases when due, then claim if anything may be ready."""
        now = time.time()
        if now >= self._next_sweep:
            self._next_sweep = now + self._sweep_every_s
            self.restore_expired(now)
        mark = (self._db.data_version(), generation, queues)
        if mark == self._idle_mark:
            return []  # nothing committed since these queues were seen empty
        if not self._any_ready(queues):
            self._idle_mark = mark
            return []
        self._idle_mark = None
        return self._claim(queues, max_count, now)

    def _any_ready(self, queues: tuple[str, ...]) -> bool:
        marks = ",".join("?" * len(queues))
        sql = f"SELECT 1 FROM celeriac_messages WHERE state = 0 AND queue IN ({marks}) LIMIT 1"
        with self._db.read() as conn:
            return conn.execute(sql, queues).fetchone() is not None

    def _claim(self, queues: tuple[str, ...], max_count: int, now: float) -> list[Delivery]:
        lease_until = now + self.visibility_timeout_s
        with self._db.write() as conn:
            candidates: list[tuple[int, int, int, int]] = []
            for index, queue in enumerate(queues):
                for row_id, step, pos in conn.execute(SELECT_READY, (queue, max_count)):
                    candidates.append((step, index, pos, row_id))
            candidates.sort()  # Redis order: bucket, then queue as given, then FIFO
            chosen = [row_id for _, _, _, row_id in candidates[:max_count]]
            claimed: dict[int, tuple[str, int, bytes]] = {}
            for start in range(0, len(chosen), MAX_SQL_VARIABLES):
                ids = chosen[start : start + MAX_SQL_VARIABLES]
                sql = CLAIM.format(marks=",".join("?" * len(ids)))
                params = (self.owner, os.getpid(), now, lease_until, *ids)
                for row_id, queue, claim, body in conn.execute(sql, params):
                    claimed[row_id] = (queue, claim, body)
        # RETURNING has no defined order: give them back in the order chosen
        out = []
        for row_id in chosen:
            if row_id in claimed:
                queue, claim, body = claimed[row_id]
                out.append(Delivery(queue, f"{row_id}:{claim}", bytes(body)))
        return out

    def ack(self, receipts: Sequence[str]) -> None:
        # no state check: a message whose lease ran out and that waits again unclaimed is
        # still this claim's to finish, which saves running it twice
        claims = _claims(receipts)
        if claims:
            with self._db.write() as conn:
                conn.executemany(DELETE_CLAIM, claims)

    def requeue(self, receipts: Sequence[str], *, to_front: bool = True) -> int:
        """Put claimed messages back on their queues, marked redelivered; returns how many."""
        claims = _claims(receipts)
        if not claims:
            return 0
        with self._db.write() as conn:
            rows = recovery.rows_by_claim(conn, claims)
            restored, _ = recovery.release_rows(
                conn, rows, to_front=to_front, max_losses=None, now=time.time()
            )
        if restored:
            self._notify()
        return restored

    # liveness and recovery
    def restore_lost(
        self, receipts: Sequence[str], max_losses: int, owner: str | None = None
    ) -> tuple[int, int]:
        """Put back messages whose worker died, counting the loss; one lost more than
        *max_losses* times goes to the dead letters. Returns (restored, dead-lettered)."""
        claims = _claims(receipts)
        if not claims:
            return (0, 0)
        with self._db.write() as conn:
            rows = recovery.rows_by_claim(conn, claims)
            counts = recovery.release_rows(
                conn, rows, to_front=True, max_losses=max_losses, now=time.time()
            )
        self._after_restore(counts)
        return counts

    def heartbeat(
        self, owners: Sequence[str], started: Mapping[str, Collection[str]] | None = None
    ) -> None:
        """Mark *owners* alive now and extend the leases of what they hold; with *started*,
        record what each named owner holds but has not begun (see base)."""
        if owners:
            now = time.time()
            with self._db.write() as conn:
                recovery.beat(conn, owners, now, now + self.visibility_timeout_s)
                for owner in owners if started is not None else ():
                    begun = started.get(owner) if started is not None else None
                    ids = None if begun is None else {c[0] for c in _claims(list(begun))}
                    recovery.note_idle(conn, owner, ids)

    def retire(self, owner: str | None = None) -> None:
        """Forget an owner that stopped cleanly (after it put back what it held)."""
        with self._db.write() as conn:
            recovery.forget_owner(conn, owner or self.owner)

    def recover_owner(self, owner: str, max_losses: int | None) -> tuple[int, int]:
        """Put back everything a dead owner holds, and forget the owner."""
        with self._db.write() as conn:
            rows = recovery.rows_of_owner(conn, owner)
            counts = recovery.release_rows(
                conn,
                rows,
                to_front=True,
                max_losses=max_losses,
                now=time.time(),
                spared=recovery.idle_ids(conn, owner),
            )
            recovery.forget_owner(conn, owner)
        self._after_restore(counts)
        return counts

    def silent_owners(self, silent_for_s: float) -> list[str]:
        with self._db.read() as conn:
            return recovery.silent_owners(conn, time.time() - silent_for_s)

    def recover(
        self, dead_after_s: float, visibility_timeout_s: float | None, max_losses: int
    ) -> tuple[int, int]:
        """Put back the claims of owners silent for *dead_after_s*, and (last resort) claims
        not renewed for *visibility_timeout_s*. Returns (restored, dead-lettered)."""
        now = time.time()
        with self._db.read() as conn:
            silent = recovery.silent_owners(conn, now - dead_after_s)
        restored = dead = 0
        for owner in silent:
            r, d = self.recover_owner(owner, max_losses)
            restored, dead = restored + r, dead + d
            if r or d:
                logger.warning(
                    "owner %s stopped beating: restored %d message(s), dead-lettered %d",
                    owner,
                    r,
                    d,
                )
        if visibility_timeout_s:
            # lease_until is (claim or last beat) + our own timeout; shift to the one asked
            cutoff = now - visibility_timeout_s + self.visibility_timeout_s
            r, d = self._restore_past_lease(cutoff, max_losses)
            restored, dead = restored + r, dead + d
        return restored, dead

    def restore_expired(self, now_s: float | None = None) -> int:
        """Put back claims whose lease ended (their claimer died or stalled)."""
        now = time.time() if now_s is None else now_s
        restored, _ = self._restore_past_lease(now, self._max_losses)
        return restored

    def _restore_past_lease(self, cutoff: float, max_losses: int) -> tuple[int, int]:
        probe = "SELECT 1 FROM celeriac_messages WHERE state = 1 AND lease_until <= ? LIMIT 1"
        with self._db.read() as conn:
            if conn.execute(probe, (cutoff,)).fetchone() is None:
                return (0, 0)
        with self._db.write() as conn:
            rows = recovery.rows_past_lease(conn, cutoff, 1000)
            counts = recovery.release_rows(
                conn, rows, to_front=True, max_losses=max_losses, now=time.time()
            )
        if rows:
            logger.warning(
                "visibility timeout: restored %d message(s) with no live owner, dead-lettered %d",
                *counts,
            )
        self._after_restore(counts)
        return counts

    def _after_restore(self, counts: tuple[int, int]) -> None:
        if counts[0]:
            self._idle_mark = None
            self._notify()

    # revoked task ids
    def add_revoked(self, task_ids: Sequence[str], ttl_s: float) -> None:
        if task_ids:
            with self._db.write() as conn:
                revoked.add_revoked(conn, task_ids, ttl_s, time.time())

    def revoked_version(self) -> int:
        with self._db.read() as conn:
            return revoked.revoked_version(conn)

    def revoked_ids(self) -> set[str]:
        with self._db.read() as conn:
            return revoked.revoked_ids(conn, time.time())

    # ETA / countdown
    def defer(self, delivery: Delivery, due_s: float) -> None:
        """Park a message due later in the database (not in worker memory) until *due_s*."""
        claim = parse_receipt(delivery.receipt)
        with self._db.write() as conn:
            if claim is None:
                row = (delivery.queue, 0, delivery.raw)
            else:
                row = conn.execute(
                    DELETE_CLAIM + " RETURNING queue, priority, body", claim
                ).fetchone()
            if row is None:
                logger.debug("defer of %s ignored: another consumer holds it", delivery.receipt)
                return
            conn.execute(
                "INSERT INTO celeriac_delayed (due, queue, priority, body) VALUES (?, ?, ?, ?)",
                (due_s, *row),
            )

    def promote_due(self, now_s: float, limit: int = 1000) -> float | None:
        """Queue parked messages that are due, each at the front of its own priority bucket;
        returns when the next one falls due."""
        with self._db.read() as conn:
            first = conn.execute("SELECT MIN(due) FROM celeriac_delayed").fetchone()[0]
        if first is None or first > now_s:
            return None if first is None else float(first)
        with self._db.write() as conn:
            due = conn.execute(
                "DELETE FROM celeriac_delayed WHERE id IN (SELECT id FROM celeriac_delayed "
                "WHERE due <= ? ORDER BY due, id LIMIT ?) RETURNING due, id, queue, priority, body",
                (now_s, limit),
            ).fetchall()
            # latest due first, each to the front of its bucket: the earliest ends up next
            for _, _, queue, priority, body in sorted(due, reverse=True):
                step = priority_step(priority)
                pos = conn.execute(recovery.FRONT_POS, (queue, step)).fetchone()[0]
                conn.execute(
                    "INSERT INTO celeriac_messages (queue, step, priority, pos, published_at, "
                    "body) VALUES (?, ?, ?, ?, ?, ?)",
                    (queue, step, priority, pos, now_s, body),
                )
            nxt = conn.execute("SELECT MIN(due) FROM celeriac_delayed").fetchone()[0]
        if due:
            self._notify()
        return None if nxt is None else float(nxt)

    # dead letters
    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        claim = parse_receipt(delivery.receipt)
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO celeriac_dead_letters (queue, reason, time, body) VALUES (?, ?, ?, ?)",
                (delivery.queue, reason, time.time(), delivery.raw),
            )
            if claim is not None:
                conn.execute(DELETE_CLAIM, claim)

    def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        """Newest first, as the Redis broker lists them."""
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT queue, reason, time, body FROM celeriac_dead_letters "
                "WHERE queue = ? ORDER BY id DESC LIMIT ?",
                (queue, limit),
            ).fetchall()
        return [DeadLetter(q, reason, float(t), bytes(body)) for q, reason, t, body in rows]

    def dead_letter_count(self, queue: str) -> int:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM celeriac_dead_letters WHERE queue = ?", (queue,)
            ).fetchone()
        return int(row[0])

    def requeue_dead(self, queue: str, task_id: str | None = None) -> int:
        now = time.time()
        with self._db.write() as conn:
            rows = conn.execute(
                "SELECT id, reason, time, body FROM celeriac_dead_letters WHERE queue = ? "
                "ORDER BY id",  # oldest first, so they keep their order on the queue
                (queue,),
            ).fetchall()
            moved = 0
            for row_id, reason, moment, body in rows:
                letter = DeadLetter(queue, reason, float(moment), bytes(body))
                if task_id is not None and letter.task_id != task_id:
                    continue
                level = message_priority(letter.raw)
                step = priority_step(level)
                conn.execute(INSERT_READY, (queue, step, level, queue, step, now, letter.raw))
                conn.execute("DELETE FROM celeriac_dead_letters WHERE id = ?", (row_id,))
                moved += 1
        if moved:
            self._idle_mark = None
            self._notify()
        return moved

    def purge_dead(self, queue: str) -> int:
        with self._db.write() as conn:
            cursor = conn.execute("DELETE FROM celeriac_dead_letters WHERE queue = ?", (queue,))
            return int(cursor.rowcount)

    # inspection and maintenance
    def queue_length(self, queue: str) -> int:
        """Messages waiting on *queue* (claimed and deferred ones are not counted)."""
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM celeriac_messages WHERE state = 0 AND queue = ?", (queue,)
            ).fetchone()
        return int(row[0])

    def purge(self, queues: Sequence[str]) -> int:
        """Delete the waiting messages of *queues*; claimed ones finish normally."""
        names = list(dict.fromkeys(queues))
        if not names:
            return 0
        marks = ",".join("?" * len(names))
        with self._db.write() as conn:
            cursor = conn.execute(
                f"DELETE FROM celeriac_messages WHERE state = 0 AND queue IN ({marks})", names
            )
            return int(cursor.rowcount)

    def ping(self) -> None:
        with self._db.read() as conn:
            conn.execute("SELECT 1").fetchone()

    def close(self) -> None:
        self._db.close()


__all__ = ["DEFAULT_VISIBILITY_TIMEOUT_S", "SqliteBroker", "parse_receipt"]
