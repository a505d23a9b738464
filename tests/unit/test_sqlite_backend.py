"""SQLite result backend behaviour beyond the shared contract: storage form and cleanup."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from celeriac import states
from celeriac.backends import build_meta
from celeriac.backends.sqlite import SqliteBackend
from celeriac.config import Settings
from celeriac.serialization import dumps_json


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "results.sqlite3"


@pytest.fixture
def backend(db_path: Path) -> Iterator[SqliteBackend]:
    opened = SqliteBackend(f"sqlite:///{db_path}", Settings())
    yield opened
    opened.close()


def row_count(db_path: Path) -> int:
    conn = sqlite3.connect(db_path)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM celeriac_task_meta").fetchone()[0])
    finally:
        conn.close()


def test_meta_is_stored_as_the_json_the_redis_backend_writes(
    backend: SqliteBackend, db_path: Path
) -> None:
    meta = build_meta("t1", states.SUCCESS, 8, place={"pid": 1})
    backend.store("t1", meta, None)
    conn = sqlite3.connect(db_path)
    try:
        stored = conn.execute("SELECT meta FROM celeriac_task_meta").fetchone()[0]
    finally:
        conn.close()
    assert stored == dumps_json(meta)


def test_purge_expired_deletes_expired_rows(backend: SqliteBackend, db_path: Path) -> None:
    backend.store("short", build_meta("short", states.SUCCESS, 1), 10)
    backend.store("long", build_meta("long", states.SUCCESS, 2), 1000)
    assert backend.purge_expired(time.time() + 100) == 1
    assert row_count(db_path) == 1


def test_a_store_deletes_rows_that_expired_earlier(db_path: Path) -> None:
    first = SqliteBackend(f"sqlite:///{db_path}", Settings())
    first.store("short", build_meta("short", states.SUCCESS, 1), 0.2)
    first.close()
    threading.Event().wait(0.3)  # the row's lifetime is the input here
    later = SqliteBackend(f"sqlite:///{db_path}", Settings())
    later.store("t2", build_meta("t2", states.SUCCESS, 2), None)
    later.close()
    assert row_count(db_path) == 1


def test_in_memory_results_live_within_the_process() -> None:
    backend = SqliteBackend("sqlite://:memory:", Settings())
    meta = build_meta("t1", states.SUCCESS, 8)
    backend.store("t1", meta, None)
    try:
        assert backend.wait_for("t1", 1, 0.05) == meta
    finally:
        backend.close()
