"""Where events travel: Redis PUB/SUB (Celery's way) or a table of the SQLite broker.

A transport publishes encoded envelopes and reads them back. On Redis, every envelope is a
PUBLISH on ``/{db}.celeryev/<routing key>``, so Celery's receivers and Flower see them; a
batch goes out in one pipeline. On the SQLite broker, which has no PUB/SUB, envelopes are
rows of ``celeriac_events`` kept for ``EVENTS_KEPT_S`` seconds; ``celeriac events`` polls
them.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConfigurationError
from . import wire

if TYPE_CHECKING:
    from ..app import Celeriac

EVENTS_KEPT_S = 60.0
POLL_S = 0.1

SQLITE_SCHEMA = """
    CREATE TABLE IF NOT EXISTS celeriac_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at REAL NOT NULL,
        routing_key TEXT NOT NULL,
        envelope BLOB NOT NULL
    )
"""


class EventTransport(Protocol):
    def publish(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Send (routing key, envelope) pairs, in order."""

    def listen(self, timeout_s: float | None) -> Iterator[bytes | None]:
        """Envelopes as they arrive; None each time nothing came for a short while."""


class RedisEvents:
    def __init__(self, client: Any, exchange: str = wire.EXCHANGE) -> None:
        self.client = client
        self.exchange = exchange
        self.db = int(client.connection_pool.connection_kwargs.get("db", 0))

    def publish(self, items: Sequence[tuple[str, bytes]]) -> None:
        if len(items) == 1:
            key, raw = items[0]
            self.client.publish(wire.channel(self.db, key, self.exchange), raw)
            return
        pipe = self.client.pipeline(transaction=False)
        for key, raw in items:
            pipe.publish(wire.channel(self.db, key, self.exchange), raw)
        pipe.execute()

    def listen(self, timeout_s: float | None) -> Iterator[bytes | None]:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        pubsub.psubscribe(wire.channel(self.db, "*", self.exchange))
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            while deadline is None or time.monotonic() < deadline:
                message = pubsub.get_message(timeout=0.25)
                if message is None:
                    yield None
                elif message.get("type") == "pmessage":
                    yield message["data"]
        finally:
            pubsub.close()


class SQLiteEvents:
    def __init__(self, database: Any) -> None:
        self.database = database
        self._ready = False
        self._next_prune = 0.0

    def _schema(self, conn: sqlite3.Connection) -> None:
        if not self._ready:
            conn.execute(SQLITE_SCHEMA)
            self._ready = True

    def publish(self, items: Sequence[tuple[str, bytes]]) -> None:
        now = time.time()
        with self.database.write() as conn:
            self._schema(conn)
            conn.executemany(
                "INSERT INTO celeriac_events (created_at, routing_key, envelope) VALUES (?, ?, ?)",
                [(now, key, raw) for key, raw in items],
            )
            if now >= self._next_prune:
                self._next_prune = now + EVENTS_KEPT_S / 4
                conn.execute(
                    "DELETE FROM celeriac_events WHERE created_at < ?", (now - EVENTS_KEPT_S,)
                )

    def listen(self, timeout_s: float | None) -> Iterator[bytes | None]:
        with self.database.write() as conn:
            self._schema(conn)
            row = conn.execute("SELECT COALESCE(MAX(id), 0) FROM celeriac_events").fetchone()
        last = int(row[0])
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while deadline is None or time.monotonic() < deadline:
            with self.database.read() as conn:
                rows = conn.execute(
                    "SELECT id, envelope FROM celeriac_events WHERE id > ? ORDER BY id", (last,)
                ).fetchall()
            for row_id, raw in rows:
                last = int(row_id)
                yield bytes(raw)
            if not rows:
                yield None
                time.sleep(POLL_S)


def transport_for(app: Celeriac) -> EventTransport:
    """The event transport of *app*'s broker (a new one per process: never shared over fork)."""
    broker: Any = app.broker
    exchange = str(app.conf.get("event_exchange") or wire.EXCHANGE)
    client = getattr(broker, "client", None)
    if client is not None:
        return RedisEvents(client, exchange)
    database = getattr(broker, "database", None)
    if database is not None:
        return SQLiteEvents(database)
    if getattr(broker, "acks_at_once", False):  # RabbitMQ: the celeryev topic exchange
        from ..brokers.amqp_events import AmqpEvents

        return AmqpEvents(broker, exchange)
    raise ConfigurationError(
        f"the {type(broker).__name__} broker carries no events; use a Redis or SQLite "
        "broker_url to send and read Celery events"
    )
