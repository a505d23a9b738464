"""Celery's per-task log lines and logging settings, read from real worker processes' logs."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery
from tests.support.workers import TESTS_DIR, WorkerProcess, subprocess_env

STAMP = r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}: (?P<level>[A-Z]+)/(?P<process>[\w-]+)\] "


@pytest.fixture
def client(redis_url: str, backend_url: str) -> Iterator[Celery]:
    app = Celery("client", broker=redis_url, backend=backend_url)
    yield app
    app.close()


def stop(worker: WorkerProcess) -> str:
    """Stop the worker warm and return everything it wrote to stdout and stderr."""
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0, worker.log()
    return worker.log()


def wait_for_text(path: Path, text: str, worker: WorkerProcess, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not (path.exists() and text in path.read_text(errors="replace")):
        assert worker.process.poll() is None, worker.log()
        assert time.monotonic() < deadline, f"{text!r} never reached {path}"
        time.sleep(0.05)


def test_worker_logs_celerys_per_task_lines_at_info(
    worker_factory: Callable[..., WorkerProcess], client: Celery
) -> None:
    worker = worker_factory("log_tasks", "-P", "solo", "-l", "info")
    ok = client.send_task("log.add", (2, 3))
    big = client.send_task("log.big", (50_000,))
    bad = client.send_task("log.boom")
    flaky = client.send_task("log.flaky")
    past = datetime.now(timezone.utc) - timedelta(seconds=5)
    expired = client.send_task("log.add", (1, 1), expires=past)
    chatty = client.send_task("log.chatty", ("hello",))
    assert ok.get(timeout=20) == 5
    assert len(big.get(timeout=20)) == 50_000
    with pytest.raises(ValueError):
        bad.get(timeout=20)
    assert flaky.get(timeout=20) == "second try"
    assert chatty.get(timeout=20) == "hello"
    log = stop(worker)
    lines = log.splitlines()

    def line(pattern: str) -> re.Match[str]:
        found = [m for m in (re.fullmatch(STAMP + pattern, text) for text in lines) if m]
        assert found, f"no line matches {pattern!r}:\n{log}"
        return found[0]

    assert line(rf"Task log\.add\[{ok.id}\] received")["level"] == "INFO"
    succeeded = line(rf"Task log\.add\[{ok.id}\] succeeded in (?P<s>[0-9.e-]+)s: 5")
    assert succeeded["level"] == "INFO" and float(succeeded["s"]) < 5
    big_line = line(rf"Task log\.big\[{big.id}\] succeeded in [0-9.e-]+s: '(x+)\.\.\.(x+)'")
    assert len(big_line.group(0)) < 1200
    failed = line(rf"Task log\.boom\[{bad.id}\] raised unexpected: ValueError\('boom on purpose'\)")
    assert failed["level"] == "ERROR"
    after = lines[lines.index(failed.group(0)) + 1]
    assert after == "Traceback (most recent call last):"
    assert line(rf"Task log\.flaky\[{flaky.id}\] retry: Retry .*KeyError\('first try'\)")
    assert line(rf"Discarding revoked task: log\.add\[{expired.id}\]")["level"] == "INFO"
    # a task logger's line (worker_task_log_format's default) and a print() (redirected)
    assert line(rf"log\.chatty\[{chatty.id}\]: task says hello")["level"] == "WARNING"
    assert line(r"printed hello")["level"] == "WARNING"


def test_worker_at_warning_logs_no_per_task_info_lines(
    worker_factory: Callable[..., WorkerProcess], client: Celery
) -> None:
    # at WARNING, "ready." is not logged: the banner's task list says it has started
    worker = worker_factory("log_tasks", "-P", "solo", "-l", "warning", ready_text="[tasks]")
    result = client.send_task("log.add", (2, 3))
    assert result.get(timeout=20) == 5
    log = stop(worker)
    assert "received" not in log and "succeeded" not in log


def test_worker_log_format_and_task_log_format_and_redirect_level(
    worker_factory: Callable[..., WorkerProcess], client: Celery
) -> None:
    env = {
        "LOG_FORMAT": "WORKERLINE %(levelname)s %(message)s",
        "LOG_TASK_FORMAT": "TASKLINE %(levelname)s %(task_name)s %(task_id)s %(message)s",
        "LOG_REDIRECT_LEVEL": "INFO",
    }
    worker = worker_factory("log_tasks", "-P", "threads", "-l", "info", env_extra=env)
    result = client.send_task("log.chatty", ("hi",))
    assert result.get(timeout=20) == "hi"
    lines = stop(worker).splitlines()
    assert f"WORKERLINE INFO Task log.chatty[{result.id}] received" in lines
    assert f"TASKLINE WARNING log.chatty {result.id} task says hi" in lines
    assert "WORKERLINE INFO printed hi" in lines


def test_hijack_root_logger_false_leaves_the_users_root_handler_alone(
    worker_factory: Callable[..., WorkerProcess], client: Celery, tmp_path: Path
) -> None:
    user_log = tmp_path / "user.log"
    env = {"LOG_HIJACK": "0", "USER_LOG": str(user_log)}
    worker = worker_factory(
        "log_tasks", "-P", "solo", "-l", "info", env_extra=env, wait_ready=False
    )
    wait_for_text(user_log, "ready.", worker)
    result = client.send_task("log.add", (2, 3))
    assert result.get(timeout=20) == 5
    log = stop(worker)
    text = user_log.read_text()
    assert f"USER INFO celeriac.worker.log_lines Task log.add[{result.id}] received" in text
    assert f"Task log.add[{result.id}] received" not in log  # no second handler of ours


def test_a_setup_logging_receiver_configures_logging_instead_of_celeriac(
    worker_factory: Callable[..., WorkerProcess], client: Celery, tmp_path: Path
) -> None:
    user_log = tmp_path / "user.log"
    env = {"LOG_SETUP_SIGNAL": "1", "USER_LOG": str(user_log)}
    worker = worker_factory(
        "log_tasks", "-P", "solo", "-l", "info", env_extra=env, wait_ready=False
    )
    wait_for_text(user_log, "ready.", worker)
    result = client.send_task("log.add", (2, 3))
    assert result.get(timeout=20) == 5
    log = stop(worker)
    assert f"SIGNAL INFO celeriac.worker.log_lines Task log.add[{result.id}] received" in (
        user_log.read_text()
    )
    assert "received" not in log


def long_line_pattern(size: int) -> re.Pattern[str]:
    return re.compile(
        STAMP + r"log\.long_lines\[[0-9a-f-]{36}\]: T(?P<tag>\d)-(?P<n>\d{4}) " + f"x{{{size}}} end"
    )


def assert_whole_lines(lines: list[str], size: int, tasks: int, count: int) -> None:
    """Every long line whole, each once, from at least two children."""
    # any piece of a long line: its run of x's or its "T<tag>-<n> " marker (a task id such
    # as 489c8f0f-00c3-... in a "received" line is not one)
    marker = re.compile(r"T\d-\d{4} ")
    ours = [text for text in lines if "xxxxxxxx" in text or marker.search(text)]
    matched = [long_line_pattern(size).fullmatch(text) for text in ours]
    assert all(matched), [text[:120] for text, m in zip(ours, matched, strict=True) if not m][:3]
    seen = {(m["tag"], m["n"]) for m in matched if m}
    assert len(seen) == len(ours) == tasks * count
    processes = {m["process"] for m in matched if m}
    assert processes <= {f"ForkPoolWorker-{i}" for i in (1, 2, 3)}
    assert len(processes) >= 2  # children wrote at the same time


def test_prefork_children_write_whole_lines_to_a_stderr_pipe(
    redis_url: str, backend_url: str, client: Celery, tmp_path: Path
) -> None:
    cmd = [sys.executable, "-m", "celeriac", "-A", "log_tasks", "worker", "-P", "prefork"]
    process = subprocess.Popen(
        [*cmd, "-c", "3", "-l", "info", "--without-banner"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=subprocess_env(redis_url, backend_url),
        cwd=str(TESTS_DIR / "support"),
    )
    worker = WorkerProcess(process, tmp_path / "unused.log")
    chunks: list[bytes] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        stream: Any = process.stdout
        for chunk in iter(lambda: stream.read1(65536), b""):
            chunks.append(chunk)
            if b"ready." in b"".join(chunks[-2:]):
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(20), b"".join(chunks).decode(errors="replace")
        size, count = 20_000, 30
        barrier = f"together-{uuid.uuid4().hex}"  # the first three log at the same time
        results = [
            client.send_task("log.long_lines", (f"T{n}", size, count, barrier, 3)) for n in range(6)
        ]
        assert [r.get(timeout=60) for r in results] == [count] * 6
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        reader.join(10)
    finally:
        worker.stop()
        reader.join(10)
        if process.stdout is not None:
            process.stdout.close()
    lines = b"".join(chunks).decode(errors="replace").splitlines()
    assert_whole_lines(lines, size, 6, count)


def test_prefork_children_write_whole_lines_to_one_logfile(
    worker_factory: Callable[..., WorkerProcess], client: Celery, tmp_path: Path
) -> None:
    logfile = tmp_path / "worker.log"
    worker = worker_factory(
        "log_tasks",
        "-P",
        "prefork",
        "-c",
        "3",
        "-l",
        "info",
        f"--logfile={logfile}",
        wait_ready=False,
    )
    wait_for_text(logfile, "ready.", worker)
    size, count = 20_000, 40
    barrier = f"together-{uuid.uuid4().hex}"  # the first three log at the same time
    results = [
        client.send_task("log.long_lines", (f"T{n}", size, count, barrier, 3)) for n in range(6)
    ]
    assert [r.get(timeout=60) for r in results] == [count] * 6
    stop(worker)
    lines = logfile.read_text().splitlines()
    assert_whole_lines(lines, size, 6, count)
