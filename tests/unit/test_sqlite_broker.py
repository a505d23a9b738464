"""SQLite broker behaviour beyond the shared contract: claims, leases, fork, errors."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson
import pytest

from celeriac.brokers.sqlite import SqliteBroker
from celeriac.config import Settings
from celeriac.errors import BrokerError, ConfigurationError
from celeriac.protocol import SendOptions, build_envelope

FORK = multiprocessing.get_context("fork")

OpenBroker = Callable[..., SqliteBroker]


def envelope(label: str) -> bytes:
    return build_envelope("unit.noop", label, [], {}, SendOptions(queue="q"))


def label_of(raw: bytes) -> str:
    return str(orjson.loads(raw)["headers"]["id"])


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "broker.sqlite3"


@pytest.fixture
def open_broker(db_path: Path) -> Iterator[OpenBroker]:
    opened: list[SqliteBroker] = []

    def open_(client_name: str = "unit", **transport_options: Any) -> SqliteBroker:
        settings = Settings({"broker_transport_options": transport_options})
        broker = SqliteBroker(f"sqlite:///{db_path}", settings, client_name=client_name)
        opened.append(broker)
        return broker

    yield open_
    for broker in opened:
        broker.close()


@pytest.fixture
def observer(db_path: Path, open_broker: OpenBroker) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection to the broker's file, to look without going through it."""
    open_broker().ping()  # creates the file and its tables
    conn = sqlite3.connect(db_path, isolation_level=None)
    yield conn
    conn.close()


def test_database_runs_in_wal_mode(observer: sqlite3.Connection) -> None:
    assert observer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_idle_fetch_does_not_write_to_the_database(
    open_broker: OpenBroker, observer: sqlite3.Connection
) -> None:
    broker = open_broker()
    broker.ping()
    before = observer.execute("PRAGMA data_version").fetchone()[0]
    assert broker.fetch(["q"], 1, 0.1) == []
    assert observer.execute("PRAGMA data_version").fetchone()[0] == before


def test_fetch_claims_more_messages_than_one_statement_can_name(open_broker: OpenBroker) -> None:
    broker = open_broker()
    broker.publish_many([("q", envelope(f"m{i:04}"), 0) for i in range(1200)])
    taken = broker.fetch(["q"], 1200, 0)
    assert [label_of(d.raw) for d in taken] == [f"m{i:04}" for i in range(1200)]


def test_stale_receipt_cannot_requeue_the_copy_another_consumer_holds(
    open_broker: OpenBroker,
) -> None:
    slow, other = open_broker("slow", visibility_timeout=0.2), open_broker("other")
    slow.publish("q", envelope("a"))
    [old] = slow.fetch(["q"], 1, 0)
    other.restore_expired(now_s=time.time() + 1)  # as if the lease had run out
    [new] = other.fetch(["q"], 1, 0)
    assert (slow.requeue([old.receipt]), other.requeue([new.receipt])) == (0, 1)


def test_stale_ack_leaves_the_new_claim_alone(open_broker: OpenBroker) -> None:
    slow, other = open_broker("slow", visibility_timeout=0.2), open_broker("other")
    slow.publish("q", envelope("a"))
    [old] = slow.fetch(["q"], 1, 0)
    other.restore_expired(now_s=time.time() + 1)  # as if the lease had run out
    [new] = other.fetch(["q"], 1, 0)
    slow.ack([old.receipt])
    assert other.requeue([new.receipt]) == 1


def test_ack_after_the_lease_ran_out_still_removes_an_unclaimed_message(
    open_broker: OpenBroker,
) -> None:
    slow, other = open_broker("slow", visibility_timeout=0.2), open_broker("other")
    slow.publish("q", envelope("a"))
    [old] = slow.fetch(["q"], 1, 0)
    other.restore_expired(now_s=time.time() + 1)  # as if the lease had run out
    slow.ack([old.receipt])  # it finished after all: no need to run it twice
    assert other.fetch(["q"], 1, 0) == []


def _use_after_fork(broker: SqliteBroker, out: Connection) -> None:
    broker.publish("q", envelope("from-child"))
    out.send(broker.database.opened_by_pid)


def test_forked_child_opens_its_own_connection(open_broker: OpenBroker) -> None:
    broker = open_broker()
    broker.ping()
    reader, writer = FORK.Pipe(duplex=False)
    child = FORK.Process(target=_use_after_fork, args=(broker, writer), daemon=True)
    child.start()
    try:
        assert reader.poll(10)
        opened_by = reader.recv()
    finally:
        child.join(10)
    assert (opened_by, child.exitcode) == (child.pid, 0)
    assert broker.database.opened_by_pid == os.getpid()
    assert [label_of(d.raw) for d in broker.fetch(["q"], 1, 0)] == ["from-child"]


def test_visibility_timeout_must_be_positive(db_path: Path) -> None:
    settings = Settings({"broker_transport_options": {"visibility_timeout": 0}})
    with pytest.raises(ConfigurationError, match="visibility_timeout"):
        SqliteBroker(f"sqlite:///{db_path}", settings)


def test_a_lock_held_too_long_gives_an_error_that_names_the_fix(
    open_broker: OpenBroker, observer: sqlite3.Connection
) -> None:
    broker = open_broker(busy_timeout=0.1)
    broker.ping()
    observer.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(BrokerError, match="busy_timeout"):
            broker.publish("q", envelope("a"))
    finally:
        observer.execute("ROLLBACK")


def test_missing_directory_gives_an_error_that_says_what_to_check(tmp_path: Path) -> None:
    broker = SqliteBroker(f"sqlite:///{tmp_path}/missing/broker.sqlite3", Settings())
    with pytest.raises(BrokerError, match="directory exist"):
        broker.ping()


def test_a_file_from_another_schema_version_is_refused_with_advice(db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE celeriac_messages (id INTEGER PRIMARY KEY, body BLOB)")
    conn.close()
    broker = SqliteBroker(f"sqlite:///{db_path}", Settings())
    with pytest.raises(ConfigurationError, match="another celeriac version"):
        broker.ping()
