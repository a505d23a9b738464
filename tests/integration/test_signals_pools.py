"""Celery's signals fired by a real worker on every pool, in the process and thread where Celery
fires them. The receivers (tests/support/signal_tasks.py) append where they ran to a file."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery
from tests.support.workers import WorkerProcess

POOLS = ["solo", "threads", "prefork", "gevent", "eventlet", "asyncio"]
WORKER_SIGNALS = ["celeryd_init", "worker_init", "celeryd_after_setup", "worker_ready"]


@pytest.fixture
def client(redis_url: str, backend_url: str) -> Iterator[Celery]:
    app = Celery("client", broker=redis_url, backend=backend_url)
    yield app
    app.close()


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_worker(
    worker_factory: Callable[..., WorkerProcess],
    tmp_path: Path,
    client: Celery,
    pool: str,
    raising: str = "",
) -> tuple[WorkerProcess, list[dict[str, Any]], dict[str, str]]:
    """Start a worker, run one task of each outcome through it, stop it warm; return what
    the receivers recorded and the task ids by outcome."""
    log = tmp_path / "signals.jsonl"
    env = {"SIGNAL_LOG": str(log), "SIGNAL_RAISING": raising}
    worker = worker_factory("signal_tasks", "-P", pool, "-c", "2", env_extra=env)
    ok_name = "sig.aadd" if pool == "asyncio" else "sig.add"
    ok = client.send_task(ok_name, (2, 3))
    bad = client.send_task("sig.boom")
    flaky = client.send_task("sig.flaky")
    assert ok.get(timeout=20) == 5
    with pytest.raises(ValueError, match="boom on purpose"):
        bad.get(timeout=20)
    assert flaky.get(timeout=20) == "second try"
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0, worker.log()
    return worker, read_lines(log), {"ok": ok.id, "bad": bad.id, "flaky": flaky.id}


def of(lines: list[dict[str, Any]], name: str, task_id: str | None = None) -> list[dict[str, Any]]:
    return [
        line
        for line in lines
        if line["signal"] == name and (task_id is None or line["task_id"] == task_id)
    ]


def where(line: dict[str, Any]) -> tuple[Any, ...]:
    return (line["pid"], line["thread"], line["greenlet"])


def assert_task_place(pool: str, worker_pid: int, line: dict[str, Any]) -> None:
    """Where Celery runs a task on *pool*: the process, thread or greenlet of the task."""
    if pool == "prefork":
        assert line["pid"] != worker_pid and line["ppid"] == worker_pid
        return
    assert line["pid"] == worker_pid
    if pool == "solo":
        assert line["thread_name"] == "MainThread"
    elif pool == "threads":
        assert line["thread_name"] != "MainThread"
    elif pool in ("gevent", "eventlet"):
        assert line["greenlet"] is not None
    elif pool == "asyncio":
        assert line["asyncio_task"] is not None


@pytest.mark.parametrize("pool", POOLS)
def test_every_signal_fires_where_celery_fires_it(
    worker_factory: Callable[..., WorkerProcess], tmp_path: Path, client: Celery, pool: str
) -> None:
    worker, lines, ids = run_worker(worker_factory, tmp_path, client, pool)
    # the worker's own life: in the main process
    logging_signals = ["after_setup_logger", "after_setup_task_logger"]
    ends = ["worker_shutting_down", "worker_shutdown"]
    for name in [*logging_signals, *WORKER_SIGNALS, "import_modules", *ends]:
        found = of(lines, name)
        assert len(found) == 1, (name, [line["signal"] for line in lines])
        assert found[0]["pid"] == worker.pid
    assert of(lines, "celeryd_init")[0]["sender"].startswith("celery@")
    names = [line["signal"] for line in lines]
    assert names.index("import_modules") < names.index("worker_ready")
    assert names.index("worker_ready") < names.index("worker_shutting_down")
    assert names[-1] in ("worker_shutdown", "worker_process_shutdown", "heartbeat_sent")
    assert of(lines, "heartbeat_sent")
    # one successful task: every task signal, once, in order, where the task ran
    ok = [line for line in lines if line["task_id"] == ids["ok"]]
    assert [line["signal"] for line in ok] == [
        "task_received",
        "task_prerun",
        "task_success",
        "task_postrun",
    ]
    prerun = of(ok, "task_prerun")[0]
    assert_task_place(pool, worker.pid, prerun)
    if pool != "asyncio":  # asyncio: stores and acks run off the loop, in an I/O thread
        assert {where(line) for line in ok} == {where(prerun)}
    assert of(ok, "task_success")[0]["result"] == "5"
    assert of(ok, "task_postrun")[0]["state"] == "SUCCESS"
    # a failure and a retry
    (failure,) = of(lines, "task_failure", ids["bad"])
    assert "boom on purpose" in failure["exception"]
    (retry,) = of(lines, "task_retry", ids["flaky"])
    if pool != "asyncio":  # asyncio: a plain def task runs in a thread, its outcome in another
        assert_task_place(pool, worker.pid, failure)
        assert_task_place(pool, worker.pid, retry)
    assert failure["pid"] == of(lines, "task_prerun", ids["bad"])[0]["pid"]
    assert retry["pid"] == of(lines, "task_prerun", ids["flaky"])[0]["pid"]
    republished = of(lines, "before_task_publish", ids["flaky"])
    assert republished and republished[0]["sender"] == "sig.flaky"
    assert of(lines, "after_task_publish", ids["flaky"])
    states = [line["state"] for line in of(lines, "task_postrun", ids["flaky"])]
    assert sorted(states) == ["RETRY", "SUCCESS"]  # in prefork, two children may race


def test_prefork_children_run_worker_process_init_before_their_tasks(
    worker_factory: Callable[..., WorkerProcess], tmp_path: Path, client: Celery
) -> None:
    worker, lines, _ = run_worker(worker_factory, tmp_path, client, "prefork")
    inits = of(lines, "worker_process_init")
    child_pids = {line["pid"] for line in inits}
    assert len(inits) == 2 and worker.pid not in child_pids
    assert all(line["ppid"] == worker.pid for line in inits)
    names_by_pid: dict[int, list[str]] = {}
    for line in lines:
        names_by_pid.setdefault(line["pid"], []).append(line["signal"])
    for line in lines:
        if line["signal"].startswith("task_"):
            assert line["pid"] in child_pids  # the child that was initialised
            assert names_by_pid[line["pid"]][0] == "worker_process_init"
    shutdowns = of(lines, "worker_process_shutdown")
    assert {line["pid"] for line in shutdowns} == child_pids
    assert all(names_by_pid[pid][-1] == "worker_process_shutdown" for pid in child_pids)
    assert {line["sender"] for line in inits} == {of(lines, "celeryd_init")[0]["sender"]}


def test_solo_runs_worker_process_init_in_the_main_process(
    worker_factory: Callable[..., WorkerProcess], tmp_path: Path, client: Celery
) -> None:
    worker, lines, _ = run_worker(worker_factory, tmp_path, client, "solo")
    (init,) = of(lines, "worker_process_init")
    assert init["pid"] == worker.pid
    names = [line["signal"] for line in lines]
    assert names.index("worker_process_init") < names.index("task_prerun")


def test_receivers_that_raise_break_neither_the_tasks_nor_the_worker(
    worker_factory: Callable[..., WorkerProcess], tmp_path: Path, client: Celery
) -> None:
    raising = "worker_process_init,worker_ready,task_received,task_prerun,task_success,task_postrun"
    worker, lines, ids = run_worker(worker_factory, tmp_path, client, "prefork", raising=raising)
    # run_worker checked every result and the clean exit; the receivers did run and raise
    assert len(of(lines, "task_prerun", ids["ok"])) == 1
    log = worker.log()
    assert "receiver of task_prerun raised on purpose" in log
    assert "receiver of worker_process_init raised on purpose" in log


def test_revoke_terminate_fires_task_revoked_in_the_prefork_manager(
    worker_factory: Callable[..., WorkerProcess], tmp_path: Path, client: Celery
) -> None:
    log = tmp_path / "signals.jsonl"
    worker = worker_factory(
        "signal_tasks", "-P", "prefork", "-c", "1", env_extra={"SIGNAL_LOG": str(log)}
    )
    result = client.send_task("sig.wait", (30,))
    deadline = time.monotonic() + 20
    while not (log.exists() and of(read_lines(log), "task_prerun", result.id)):
        assert time.monotonic() < deadline, worker.log()
        time.sleep(0.05)
    result.revoke(terminate=True, signal="SIGUSR1")
    while not of(read_lines(log), "task_revoked", result.id):
        assert time.monotonic() < deadline, worker.log()
        time.sleep(0.05)
    (revoked,) = of(read_lines(log), "task_revoked", result.id)
    assert revoked["pid"] == worker.pid  # the manager, as in Celery
    assert revoked["sender"] == "sig.wait"
    assert (revoked["terminated"], revoked["signum"], revoked["expired"]) == (
        True,
        int(signal.SIGUSR1),
        False,
    )
