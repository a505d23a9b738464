"""Growth: a long-running worker must not grow, nor its SQLite file, nor choke on contention.

- RSS of a solo and a prefork worker over many no-op tasks stays flat after warm-up
  (20k tasks here, behind ``slow``; 100k with bench/soak_rss.py);
- the SQLite file stays bounded once results expire (``result_expires``);
- 2 producers and 2 prefork workers on one SQLite file: no "database is locked", no task
  lost or run twice (20 s here, behind ``slow``; 2 minutes with bench/sqlite_contention.py).
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from bench.soak_rss import measure
from bench.sqlite_contention import run_contention
from celeriac import Celery
from celeriac.brokers.sqlite_db import WAL_SIZE_LIMIT_BYTES
from tests.support.redis_server import RedisServer
from tests.support.workers import start_celeriac_worker

RSS_TASKS = 20_000
RSS_NOISE_MIB = 4.0  # per worker, all its processes together


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_worker_rss_stays_flat_over_many_noop_tasks(pool: str, redis_server: RedisServer) -> None:
    curve = measure(
        redis_server.url(0), redis_server.url(1), pool, RSS_TASKS, [2_000, 10_000, RSS_TASKS]
    )
    print("\n" + curve.table())
    assert [done for done, _, _ in curve.samples] == [2_000, 10_000, RSS_TASKS]
    assert curve.growth_mib() < RSS_NOISE_MIB, curve.table()


def _file_size(path: Path) -> tuple[int, int]:
    """The database file's size and its write-ahead log's."""
    wal = Path(f"{path}-wal")
    return os.path.getsize(path), os.path.getsize(wal) if wal.exists() else 0


def _rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM celeriac_task_meta").fetchone()[0])


def test_sqlite_file_stays_bounded_once_results_expire(tmp_path: Path) -> None:
    path = tmp_path / "celeriac.sqlite3"
    url = f"sqlite:///{path}"
    client = Celery("growth_client", broker=url, backend=url)
    worker = start_celeriac_worker(
        "growth_tasks", url, "-P", "solo", backend_url=url, env_extra={"TEST_RESULT_EXPIRES": "1"}
    )
    batch = 1_500
    sizes: list[tuple[tuple[int, int], int]] = []  # ((db, wal) bytes, result rows)
    try:
        for _ in range(5):
            results = [client.send_task("growth.stored", (i,)) for i in range(batch)]
            assert results[-1].get(timeout=60) == batch - 1
            sizes.append((_file_size(path), _rows(path)))
            time.sleep(1.2)  # let this batch's results expire: the clock is the point here
    finally:
        worker.stop()
        client.close()
    print("\nSQLite file after each batch of", batch, "(bytes, result rows):", sizes)
    # once the first batches expired, the expired rows go as fast as new ones come
    assert sizes[-1][1] <= 2 * batch, sizes
    # the database file stops growing once the first results expired (freed pages are
    # reused); the write-ahead log is capped by journal_size_limit after each checkpoint
    assert sizes[-1][0][0] <= sizes[1][0][0] * 1.25, sizes
    assert all(wal <= WAL_SIZE_LIMIT_BYTES for (_, wal), _ in sizes), sizes


@pytest.mark.slow
def test_two_producers_two_prefork_workers_on_one_sqlite_file(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    url = f"sqlite:///{tmp_path / 'celeriac.sqlite3'}"
    report = run_contention(url, redis_server.url(4), 20.0, 80.0, tmp_path)
    print("\n" + report.summary())
    assert report.locked_lines == [], report.locked_lines[:5]
    assert report.done == report.sent, report.summary()
    assert report.duplicates == {}, report.summary()
    assert report.sent >= 2 * 20 * 80 * 0.8
