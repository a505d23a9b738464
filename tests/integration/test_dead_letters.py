"""``celeriac dead list|show|requeue|purge -Q NAME`` against real Redis, run as the real command
(``python -m celeriac``) in a subprocess, on dead letters a live worker made: tasks rejected with
``Reject(requeue=False)`` by a closed gate (tests/support/chaos_tasks.py ``chaos.gate``) and a
queue item that is not a message at all.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import redis

from celeriac import Celery
from tests.support.redis_server import free_port
from tests.support.workers import WorkerProcess, subprocess_env

QUEUE = "gated"
DEAD_KEY = f"celeriac.dead.{QUEUE}"
GATED = 3
JUNK = b"this is not a task message"


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s}s waiting for {what}"
        time.sleep(0.02)


def celeriac(url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `celeriac -b URL dead ...` command and return what it did."""
    return subprocess.run(
        [sys.executable, "-m", "celeriac", "-b", url, "dead", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=subprocess_env(url),
        timeout=60,
    )


@dataclass
class Buried:
    url: str
    run: str
    ids: list[str]  # the gated tasks' ids, in the order sent
    r: redis.Redis
    worker: WorkerProcess

    def done(self) -> set[str]:
        return {x.decode() for x in self.r.smembers(f"{self.run}:done")}

    def dead_count(self) -> int:
        return int(self.r.llen(DEAD_KEY))


@pytest.fixture
def buried(redis_url: str, worker_factory: Callable[..., WorkerProcess]) -> Iterator[Buried]:
    """A worker on QUEUE, GATED tasks it rejected into the dead letters, then one junk item."""
    r = redis.Redis.from_url(redis_url)
    worker = worker_factory("chaos_tasks", "-P", "solo", "-Q", QUEUE)
    client = Celery("dead_letters_client", broker=redis_url)
    run = f"gate-{uuid.uuid4().hex[:8]}"
    ids = [
        client.send_task("chaos.gate", (run, f"g{i}"), queue=QUEUE, task_id=f"{run}-{i}").id
        for i in range(GATED)
    ]
    client.close()
    wait_until(lambda: r.llen(DEAD_KEY) == GATED, "the gate to reject every task")
    r.lpush(QUEUE, JUNK)
    wait_until(lambda: r.llen(DEAD_KEY) == GATED + 1, "the junk to be dead-lettered")
    yield Buried(redis_url, run, ids, r, worker)
    r.close()


def test_list_counts_them_and_shows_task_name_id_and_reason(buried: Buried) -> None:
    out = celeriac(buried.url, "list", "-Q", QUEUE)
    assert out.returncode == 0, out.stderr
    assert f"{QUEUE}: {GATED + 1} dead letter(s)" in out.stdout
    for task_id in buried.ids:
        line = next(line for line in out.stdout.splitlines() if task_id in line)
        assert "chaos.gate" in line
        assert "rejected by the task" in line and f"gate of {buried.run} closed" in line
    assert "not a JSON object with properties.delivery_tag" in out.stdout


def test_list_limit_says_how_many_more_there_are(buried: Buried) -> None:
    out = celeriac(buried.url, "list", "-Q", QUEUE, "--limit", "1")
    assert out.returncode == 0, out.stderr
    assert f"... and {GATED} older" in out.stdout


def test_show_prints_the_reason_and_the_decoded_arguments(buried: Buried) -> None:
    task_id = buried.ids[1]
    out = celeriac(buried.url, "show", task_id, "-Q", QUEUE)
    assert out.returncode == 0, out.stderr
    assert f"task:    chaos.gate[{task_id}]" in out.stdout
    assert "reason:  rejected by the task" in out.stdout
    assert "body (decoded):" in out.stdout and '"g1"' in out.stdout


def test_show_by_index_prints_a_message_that_is_not_a_task(buried: Buried) -> None:
    out = celeriac(buried.url, "show", "--index", "1", "-Q", QUEUE)  # the newest: the junk
    assert out.returncode == 0, out.stderr
    assert JUNK.decode() in out.stdout


def test_show_of_an_unknown_id_fails_and_says_how_to_list(buried: Buried) -> None:
    out = celeriac(buried.url, "show", "no-such-id", "-Q", QUEUE)
    assert out.returncode != 0
    assert f"celeriac dead list -Q {QUEUE}" in out.stderr


def test_requeue_one_id_runs_that_task_once_its_cause_is_fixed(buried: Buried) -> None:
    buried.r.set(f"{buried.run}:open", 1)
    out = celeriac(buried.url, "requeue", "-Q", QUEUE, "--id", buried.ids[0])
    assert out.returncode == 0, out.stderr
    assert f"requeued 1 message(s) to {QUEUE}" in out.stdout
    wait_until(lambda: buried.done() == {"g0"}, "the requeued task to run")
    assert buried.dead_count() == GATED


def test_requeue_all_moves_every_one_back_and_junk_dies_again(buried: Buried) -> None:
    buried.r.set(f"{buried.run}:open", 1)
    out = celeriac(buried.url, "requeue", "-Q", QUEUE)
    assert out.returncode == 0, out.stderr
    assert f"requeued {GATED + 1} message(s)" in out.stdout
    wait_until(lambda: len(buried.done()) == GATED, "every requeued task to run")
    wait_until(lambda: buried.dead_count() == 1, "the junk to be dead-lettered again")
    assert buried.r.lindex(DEAD_KEY, 0) is not None
    assert JUNK.decode() in buried.r.lindex(DEAD_KEY, 0).decode()  # type: ignore[union-attr]


def test_requeue_of_an_unknown_id_fails_and_moves_nothing(buried: Buried) -> None:
    out = celeriac(buried.url, "requeue", "-Q", QUEUE, "--id", "no-such-id")
    assert out.returncode != 0
    assert "no dead letter with task id no-such-id" in out.stderr
    assert buried.dead_count() == GATED + 1


def test_purge_asks_first_and_keeps_them_when_told_no(buried: Buried) -> None:
    out = celeriac(buried.url, "purge", "-Q", QUEUE, stdin="n\n")
    assert out.returncode != 0
    assert f"{GATED + 1} dead letter(s) in {QUEUE} will be deleted" in out.stdout
    assert buried.dead_count() == GATED + 1


def test_purge_with_force_deletes_them_and_list_then_says_zero(buried: Buried) -> None:
    out = celeriac(buried.url, "purge", "-Q", QUEUE, "--force")
    assert out.returncode == 0, out.stderr
    assert f"purged {GATED + 1} dead letter(s) from {QUEUE}" in out.stdout
    assert buried.dead_count() == 0
    listed = celeriac(buried.url, "list", "-Q", QUEUE)
    assert f"{QUEUE}: 0 dead letter(s)" in listed.stdout
    assert buried.worker.process.poll() is None


def test_unreachable_broker_is_a_clear_error_not_a_traceback() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    out = celeriac(url, "list", "-Q", QUEUE)
    assert out.returncode == 1
    assert "cannot reach the Redis broker" in out.stderr
    assert "Traceback" not in out.stderr
