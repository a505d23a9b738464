"""``celeriac beat`` and ``worker -B`` as real processes, and the schedule changed while they
run: ``celeriac beat add|list|pause|resume|remove`` and the Python API, on Redis and SQLite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import click
import orjson
import pytest
import redis
from click.testing import CliRunner, Result

from celeriac import Celery
from celeriac.beat import PeriodicTasks, slot_task_id
from celeriac.beat.store import open_store
from celeriac.cli import main as cli_main
from celeriac.schedules import crontab
from tests.support.beat_ha import last_slot, start_beat, wait_until
from tests.support.redis_server import RedisServer
from tests.support.workers import WorkerProcess


@pytest.fixture
def cli() -> click.Group:
    cli_main._register_commands()
    return cli_main.cli


@pytest.fixture
def beats(redis_url: str) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> WorkerProcess:
        beat = start_beat(redis_url, env or {}, *args)
        started.append(beat)
        beat.wait_for_log("beat: starting")
        return beat

    yield start
    for beat in started:
        beat.stop()


def run(cli: click.Group, url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["-b", url, "beat", *args], prog_name="celeriac")


def queued_ids(redis_url: str) -> set[str]:
    client = redis.Redis.from_url(redis_url)
    try:
        return {orjson.loads(raw)["headers"]["id"] for raw in client.lrange("celery", 0, -1)}
    finally:
        client.close()


def test_schedule_changed_through_the_cli_reaches_a_running_beat(
    cli: click.Group, redis_url: str, beats: Callable[..., WorkerProcess]
) -> None:
    beat = beats("--max-interval", "0.2")
    store = open_store(redis_url)
    added = run(cli, redis_url, "add", "every1", "beat.record", "--every", "1", "--args", "[]")
    assert added.exit_code == 0, added.output
    wait_until(lambda: last_slot(store, "every1") > 0, 10, "the beat to see the new entry")
    first = last_slot(store, "every1") + 1
    wait_until(lambda: slot_task_id("every1", first) in queued_ids(redis_url), 10, "a run")

    listed = run(cli, redis_url, "list")
    assert "every1  beat.record  <freq: 1.00 second>  [runtime, active]" in listed.output

    assert run(cli, redis_url, "pause", "every1").output == "paused every1\n"
    paused_at = last_slot(store, "every1")
    wait_until(lambda: last_slot(store, "every1") >= paused_at + 3, 10, "paused slots to pass")
    skipped = {slot_task_id("every1", paused_at + k) for k in (2, 3)}
    assert not skipped & queued_ids(redis_url)
    assert "[runtime, paused]" in run(cli, redis_url, "list").output

    assert run(cli, redis_url, "resume", "every1").output == "resumed every1\n"
    resumed_at = last_slot(store, "every1")
    again = slot_task_id("every1", resumed_at + 2)
    wait_until(lambda: again in queued_ids(redis_url), 10, "runs after resume")

    assert run(cli, redis_url, "remove", "every1").output == "removed every1\n"
    assert run(cli, redis_url, "list").output.startswith("no periodic tasks")
    assert "every1" not in store.last_slots()
    assert "beat: sending every1" in beat.log()
    assert "beat_init received from Beat" in beat.log()
    store.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "x", "t"], "give exactly one of --every"),
        (["add", "x", "t", "--every", "1", "--crontab", "* * * * *"], "exactly one"),
        (["add", "x", "t", "--crontab", "61 * * * *"], "minute='61': 61 is out of range 0-59"),
        (["add", "x", "t", "--crontab", "* * *"], "has 3 fields; write five"),
        (["add", "x", "t", "--solar", "noon:1:2"], "solar event 'noon' is not known"),
        (["add", "x", "t", "--solar", "sunset"], "is not EVENT:LAT:LON"),
        (["add", "x", "t", "--every", "1", "--args", "{x"], "not JSON"),
        (["add", "x", "t", "--every", "1", "--kwargs", "[1]"], "must be a JSON object"),
        (["remove", "nope"], "no periodic task named 'nope'"),
        (["pause", "nope"], "`celeriac beat list` shows the names"),
    ],
)
def test_bad_beat_commands_say_what_is_wrong_and_change_nothing(
    cli: click.Group, redis_url: str, args: list[str], message: str
) -> None:
    result = run(cli, redis_url, *args)
    assert result.exit_code != 0
    assert message in result.output
    assert open_store(redis_url).entries() == {}


def test_beat_with_a_bad_schedule_exits_with_the_reason(redis_url: str, tmp_path: Path) -> None:
    beat = start_beat(redis_url, {"BEAT_EVERY_S": "-1", "BEAT_RUNS_FILE": str(tmp_path / "r")})
    try:
        assert beat.wait(20) != 0
        assert (
            "beat_schedule['tick']['schedule'] is -1.0; an interval must be above 0" in beat.log()
        )
    finally:
        beat.stop()


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_worker_with_beat_runs_its_schedule_and_stops_the_beat_on_shutdown(
    worker_factory: Callable[..., WorkerProcess], redis_url: str, tmp_path: Path, pool: str
) -> None:
    runs = tmp_path / "runs.txt"
    env = {"BEAT_EVERY_S": "1", "BEAT_RUNS_FILE": str(runs)}
    worker = worker_factory("beat_tasks", "-B", "-P", pool, "-c", "2", env_extra=env)
    store = open_store(redis_url)
    wait_until(lambda: last_slot(store) > 0, 10, "the embedded beat's first tick")
    first = last_slot(store) + 1
    wanted = {slot_task_id("tick", first), slot_task_id("tick", first + 1)}
    wait_until(lambda: runs.exists() and wanted <= set(runs.read_text().split()), 15, "runs")
    worker.signal(15)
    assert worker.wait(20) == 0
    assert "beat: stopped after sending" in worker.log()
    store.close()


def test_schedule_kept_in_sqlite_is_shared_by_every_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'broker.sqlite3'}"
    app = Celery("sqlite-beat", broker=url, set_as_current=False)
    one, two = PeriodicTasks(app), PeriodicTasks(app, store=open_store(url))
    one.add("nightly", "proj.cleanup", crontab(0, 3), kwargs={"days": 7})
    one.pause("nightly")
    (entry,) = two.list()
    assert (entry.name, entry.task, entry.is_paused) == ("nightly", "proj.cleanup", True)
    two.resume("nightly")
    assert not one.list()[0].is_paused
    # the compare-and-set: only the store that saw the current last slot moves it on
    assert one.store.claim("nightly", None, "100.000000", None)
    assert not two.store.claim("nightly", None, "160.000000", None)
    assert two.store.claim("nightly", "100.000000", "160.000000", None)
    assert not one.store.claim("nightly", "100.000000", "220.000000", None)
    two.remove("nightly")
    assert one.list() == []
    one.close()
    two.close()
    app.close()


def test_beat_writes_its_pidfile_and_logfile_and_removes_the_pidfile_on_stop(
    redis_url: str, tmp_path: Path
) -> None:
    pidfile, logfile = tmp_path / "beat.pid", tmp_path / "beat.log"
    env = {"BEAT_EVERY_S": "1", "BEAT_RUNS_FILE": str(tmp_path / "runs")}
    args = ("--pidfile", str(pidfile), "--logfile", str(logfile))
    beat = start_beat(redis_url, env, *args)
    second = None
    try:
        wait_until(lambda: logfile.exists() and "beat: starting" in logfile.read_text(), 20, "log")
        assert pidfile.read_text().strip() == str(beat.pid)
        second = start_beat(redis_url, env, *args)
        assert second.wait(20) != 0
        assert f"belongs to process {beat.pid}, which is still running" in second.log()
        beat.signal(15)
        assert beat.wait(20) == 0
        assert not pidfile.exists()
        assert "beat: stopped after sending" in logfile.read_text()
    finally:
        beat.stop()
        if second is not None:
            second.stop()


def test_beat_rides_out_a_broker_restart_and_goes_on_sending(
    redis_server: RedisServer, redis_url: str, tmp_path: Path
) -> None:
    env = {"BEAT_EVERY_S": "1", "BEAT_RUNS_FILE": str(tmp_path / "runs")}
    beat = start_beat(redis_url, env)
    store = open_store(redis_url)
    try:
        beat.wait_for_log("beat: starting")
        wait_until(lambda: last_slot(store) > 0, 10, "the first tick")
        redis_server.stop()
        beat.wait_for_log("beat: tick failed", timeout_s=10)
        assert beat.process.poll() is None
        redis_server.restart()  # no persistence: the schedule's state starts afresh
        wait_until(lambda: last_slot(store) > 0, 15, "a tick after the restart")
        after = last_slot(store)
        wait_until(lambda: slot_task_id("tick", after + 1) in queued_ids(redis_url), 10, "a send")
        assert beat.process.poll() is None
    finally:
        beat.stop()
        store.close()
