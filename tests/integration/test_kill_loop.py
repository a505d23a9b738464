"""The kill loop, short enough for CI: 400 acks_late tasks on a prefork -c 2 worker, at least
20 SIGKILLs of a random child or the whole worker (restarted when gone), on Redis and on
SQLite. Nothing may be lost, every interrupted task must start again within 10 seconds, and
no child may outlive its killed manager. The seed is logged; set KILL_LOOP_SEED to replay.

The full version (5,000 tasks, 20+ kills) is bench/kill_loop.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.kill_loop import KillLoop, KillLoopConfig, KillLoopReport, seed_from_env
from tests.support.redis_server import RedisServer

TASKS = 400
MIN_KILLS = 20
RESTORE_BOUND_S = 10.0  # the promise for a dead worker's messages

pytestmark = pytest.mark.timeout(150)


@pytest.fixture(scope="module", params=["redis", "sqlite"])
def report(
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[KillLoopReport]:
    """One kill loop per broker, run once and shared by the tests below."""
    redis_server.client(0).flushall()
    if request.param == "redis":
        broker, backend = redis_server.url(0), redis_server.url(1)
    else:
        path = tmp_path_factory.mktemp("kill-loop") / "broker.sqlite3"
        broker = backend = f"sqlite:///{path}"
    config = KillLoopConfig(
        broker_url=broker,
        backend_url=backend,
        record_url=redis_server.url(2),
        tasks=TASKS,
        min_kills=MIN_KILLS,
        seed=seed_from_env(),
        kill_gap_s=(0.6, 1.6),  # 20+ kills within the ~40 s of work
    )
    result = KillLoop(config).run()
    print(f"\n[{request.param}] {result.summary()}")
    yield result
    redis_server.client(0).flushall()


def test_kill_loop_kills_at_least_twenty_times_while_there_is_work(report: KillLoopReport) -> None:
    assert len(report.kills) >= MIN_KILLS, report.summary()


def test_kill_loop_completes_every_task_at_least_once(report: KillLoopReport) -> None:
    assert report.lost == [], f"lost {report.lost[:20]}: {report.summary()}"


def test_kill_loop_interrupts_running_tasks(report: KillLoopReport) -> None:
    assert report.restore_s, f"no kill hit a running task: {report.summary()}"


def test_kill_loop_restores_killed_work_within_ten_seconds(report: KillLoopReport) -> None:
    # counted from the last whole-worker kill before the restart: the loop sometimes kills
    # two or three freshly started workers in a row, before any could restore anything
    assert report.restore_settled_max_s < RESTORE_BOUND_S, report.summary()


def test_kill_loop_leaves_no_child_alive_after_its_worker_is_killed(
    report: KillLoopReport,
) -> None:
    assert report.orphans == [], report.summary()


# Not asserted here, printed in every summary: "unexplained" duplicates and interrupted
# tasks never seen starting again. Both depend on this loop's own bookkeeping of which pids a
# kill took (a child forked just before its manager was killed is not in the kill's list);
# they flickered in about one CI-sized run in four before the ppid was recorded, and did not
# appear in the runs investigated since. The guarantees above held in every run.
