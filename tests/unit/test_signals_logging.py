"""The worker's logging pieces: level names, colour, the task formatter, redirected print()."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from celeriac.errors import ConfigurationError
from celeriac.task import Request, pop_request, push_request
from celeriac.worker import logs


def record(message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("celeriac.task.x", level, __file__, 1, message, None, None)


def test_parse_level_takes_names_in_any_case_and_numbers() -> None:
    assert logs.parse_level("info") == logs.parse_level("INFO") == logging.INFO
    assert logs.parse_level(10) == logging.DEBUG


def test_parse_level_rejects_an_unknown_name_saying_what_to_use() -> None:
    with pytest.raises(ConfigurationError, match="use debug, info, warning"):
        logs.parse_level("loud")


def test_task_formatter_fills_the_running_tasks_name_and_id() -> None:
    formatter = logs.TaskFormatter("%(task_name)s[%(task_id)s] %(message)s")
    token = push_request(Request.of(id="abc-1", task="proj.add"))
    try:
        assert formatter.format(record("hello")) == "proj.add[abc-1] hello"
    finally:
        pop_request(token)
    assert formatter.format(record("outside")) == "???[???] outside"


def test_colour_only_when_asked_and_never_in_a_log_file() -> None:
    assert not logs.supports_color(False, None)
    assert not logs.supports_color(True, "/tmp/worker.log")
    coloured = logs.WorkerFormatter("%(message)s", use_color=True).format(
        record("bad", logging.ERROR)
    )
    assert coloured.startswith("\033[31m") and coloured.endswith("\033[0m")
    plain = logs.WorkerFormatter("%(message)s").format(record("bad", logging.ERROR))
    assert plain == "bad"


def test_redirected_print_becomes_one_record_per_line(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("celeriac.redirected.test")
    proxy = logs.StdoutsToLogger(logger, logging.WARNING, sys.__stdout__)
    with caplog.at_level(logging.WARNING, logger=logger.name):
        print("first line\nsecond line", file=proxy)
        print("   ", file=proxy)
    assert [r.getMessage() for r in caplog.records] == ["first line", "second line"]
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_setup_worker_logging_formats_root_and_task_loggers_into_the_logfile(
    tmp_path: Path,
) -> None:
    """In a child interpreter: setting logging up changes the process's global state."""
    logfile = tmp_path / "worker.log"
    script = textwrap.dedent(
        f"""
        import logging
        from celeriac import Celery, signals
        from celeriac.task import Request, push_request
        from celeriac.worker.logs import setup_worker_logging

        seen = []
        signals.after_setup_logger.connect(lambda **kw: seen.append("root"), weak=False)
        signals.after_setup_task_logger.connect(lambda **kw: seen.append("task"), weak=False)
        app = Celery("x", broker="memory://")
        app.conf.worker_log_format = "W %(levelname)s %(message)s"
        app.conf.worker_task_log_format = "T %(task_name)s %(task_id)s %(message)s"
        setup_worker_logging(app, loglevel="info", logfile={str(logfile)!r})
        logging.getLogger("proj").info("from the worker")
        logging.getLogger("proj").debug("not at info")
        push_request(Request.of(id="id-1", task="proj.add"))
        logging.getLogger("celeriac.task.proj").warning("from a task")
        print("printed")
        assert seen == ["root", "task"], seen
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=60)
    assert logfile.read_text().splitlines() == [
        "W INFO from the worker",
        "T proj.add id-1 from a task",
        "W WARNING printed",
    ]
