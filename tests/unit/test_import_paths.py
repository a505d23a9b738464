"""The import paths Celery projects use exist under ``celeriac``, with Celery's names, and
do what Celery's do: exceptions (Ignore in the worker), task loggers, current_app and
current_task, abortable tasks, and a module written for Celery that runs once its imports
say ``celeriac``."""

from __future__ import annotations

import importlib
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery, states
from celeriac.brokers.base import Delivery
from celeriac.errors import CeleriacError, ConfigurationError
from celeriac.worker import execute
from celeriac.worker.execute import ExecContext
from celeriac.worker.place import worker_place

# Every name below is imported by real projects or by Celery's docs: dropping one breaks them.
PINNED: dict[str, list[str]] = {
    "celeriac.exceptions": [
        "AlreadyRegistered",
        "AlwaysEagerIgnored",
        "BackendError",
        "BackendGetMetaError",
        "BackendStoreError",
        "CDeprecationWarning",
        "CPendingDeprecationWarning",
        "CeleryError",
        "CeleryWarning",
        "ChordError",
        "DuplicateNodenameWarning",
        "DuplicateTaskNameWarning",
        "FixupWarning",
        "Ignore",
        "ImproperlyConfigured",
        "IncompleteStream",
        "InvalidTaskError",
        "MaxRetriesExceededError",
        "NotConfigured",
        "NotRegistered",
        "OperationalError",
        "QueueNotFound",
        "Reject",
        "Retry",
        "RetryTaskError",
        "SecurityError",
        "SecurityWarning",
        "SoftTimeLimitExceeded",
        "SystemTerminate",
        "TaskError",
        "TaskPredicate",
        "TaskRevokedError",
        "Terminated",
        "TimeLimitExceeded",
        "TimeoutError",
        "WorkerLostError",
        "WorkerShutdown",
        "WorkerTerminate",
        "reraise",
    ],
    "celeriac.states": [
        "ALL_STATES",
        "EXCEPTION_STATES",
        "FAILURE",
        "IGNORED",
        "PENDING",
        "PRECEDENCE",
        "PROPAGATE_STATES",
        "READY_STATES",
        "RECEIVED",
        "REJECTED",
        "RETRY",
        "REVOKED",
        "STARTED",
        "SUCCESS",
        "UNREADY_STATES",
        "precedence",
        "state",
    ],
    "celeriac.result": [
        "AsyncResult",
        "EagerResult",
        "GroupResult",
        "ResultBase",
        "ResultSet",
        "allow_join_result",
        "result_from_tuple",
    ],
    "celeriac.canvas": [
        "Signature",
        "chain",
        "chord",
        "chunks",
        "group",
        "maybe_signature",
        "maybe_subtask",
        "signature",
        "subtask",
        "xmap",
        "xstarmap",
    ],
    "celeriac.app.task": ["Context", "Task"],
    "celeriac.app.control": ["Control", "Inspect", "flatten_reply"],
    "celeriac.utils.log": ["base_logger", "get_logger", "get_task_logger", "mlevel", "task_logger"],
    "celeriac.schedules": [
        "BaseSchedule",
        "ParseException",
        "crontab",
        "crontab_parser",
        "maybe_schedule",
        "schedstate",
        "schedule",
        "solar",
    ],
    "celeriac.contrib.abortable": ["ABORTED", "AbortableAsyncResult", "AbortableTask"],
    "celeriac.signals": [
        "after_setup_logger",
        "after_setup_task_logger",
        "after_task_publish",
        "before_task_publish",
        "celeryd_after_setup",
        "celeryd_init",
        "heartbeat_sent",
        "import_modules",
        "setup_logging",
        "task_failure",
        "task_internal_error",
        "task_postrun",
        "task_prerun",
        "task_received",
        "task_rejected",
        "task_retry",
        "task_revoked",
        "task_success",
        "task_unknown",
        "worker_init",
        "worker_process_init",
        "worker_process_shutdown",
        "worker_ready",
        "worker_shutdown",
        "worker_shutting_down",
    ],
    "celeriac": [
        "Celery",
        "Task",
        "current_app",
        "current_task",
        "shared_task",
        "signature",
        "uuid",
    ],
    "celeriac.utils": ["uuid"],
}

# Celery's names that celeriac leaves out on purpose, each with the reason.
NOT_PROVIDED = {
    "celery.exceptions": {"CeleryCommandException"},  # Celery's own CLI's click exception
    "celery.utils.log": {  # the worker's logging internals, not task-module API
        "ColorFormatter",
        "LoggingProxy",
        "set_in_sighandler",
        "in_sighandler",
        "get_multiprocessing_logger",
        "reset_multiprocessing_logger",
        "LOG_LEVELS",
    },
}


@pytest.mark.parametrize("module_name", sorted(PINNED))
def test_every_pinned_name_imports_from_its_module(module_name: str) -> None:
    module = importlib.import_module(module_name)
    missing = [name for name in PINNED[module_name] if not hasattr(module, name)]
    assert missing == []
    declared = getattr(module, "__all__", None)
    if declared is not None and module_name != "celeriac":
        assert sorted(set(PINNED[module_name]) - set(declared)) == []


@pytest.mark.parametrize(
    ("celery_module", "ours"),
    [
        ("celery.exceptions", "celeriac.exceptions"),
        ("celery.states", "celeriac.states"),
        ("celery.result", "celeriac.result"),
        ("celery.canvas", "celeriac.canvas"),
        ("celery.app.task", "celeriac.app.task"),
        ("celery.app.control", "celeriac.app.control"),
        ("celery.utils.log", "celeriac.utils.log"),
        ("celery.schedules", "celeriac.schedules"),
        ("celery.contrib.abortable", "celeriac.contrib.abortable"),
        ("celery.signals", "celeriac.signals"),
    ],
)
def test_every_name_celery_exports_there_exists_here(celery_module: str, ours: str) -> None:
    theirs = importlib.import_module(celery_module)
    module = importlib.import_module(ours)
    wanted = set(theirs.__all__) - NOT_PROVIDED.get(celery_module, set())
    assert sorted(name for name in wanted if not hasattr(module, name)) == []


def test_every_celeriac_exception_derives_from_the_one_root() -> None:
    from celeriac import exceptions

    for name in PINNED["celeriac.exceptions"]:
        value = getattr(exceptions, name)
        if (
            isinstance(value, type)
            and issubclass(value, Exception)
            and not issubclass(value, Warning)
        ):
            assert issubclass(value, CeleriacError), name
    assert exceptions.CeleryError is CeleriacError


def test_task_predicates_are_not_task_errors_as_in_celery() -> None:
    from celeriac.exceptions import Ignore, Reject, Retry, TaskError, TaskPredicate

    for predicate in (Ignore, Reject, Retry):
        assert issubclass(predicate, TaskPredicate)
        assert not issubclass(predicate, TaskError)


def test_state_compares_by_celerys_precedence() -> None:
    from celeriac.states import state

    assert state(states.PENDING) < state(states.SUCCESS)
    assert state("PROGRESS") > state(states.STARTED)
    assert not state("PROGRESS") > state(states.SUCCESS)
    assert {
        "PENDING",
        "RECEIVED",
        "STARTED",
        "SUCCESS",
        "FAILURE",
        "RETRY",
        "REVOKED",
    } == states.ALL_STATES


# running through the worker's own execute path, on the memory:// broker
def run_one(app: Celery, queue: str = "celery") -> Delivery:
    (delivery,) = app.broker.fetch([queue], 1, 0.0)
    ctx = ExecContext(app=app, nodename="w1@test", place_base=worker_place("w1@test", "solo"))
    execute.handle(ctx, delivery)
    return delivery


def test_task_raising_ignore_stores_nothing_and_is_acked(app: Celery) -> None:
    from celeriac.exceptions import Ignore

    @app.task(name="t.ignored", acks_late=True)
    def ignored() -> None:
        raise Ignore()

    result = ignored.delay()
    run_one(app)
    assert app.backend.get_meta(result.id) is None
    assert result.state == states.PENDING
    assert app.broker.unacked_count() == 0
    assert app.broker.queue_length("celery") == 0
    assert app.broker.dead_letter_count("celery") == 0


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def task_lines() -> Iterator[Lines]:
    """What reaches the ``celeriac.task`` logger, the parent the worker formats."""
    handler = Lines()
    parent = logging.getLogger("celeriac.task")
    parent.addHandler(handler)
    old_level = parent.level
    parent.setLevel(logging.INFO)
    yield handler
    parent.removeHandler(handler)
    parent.setLevel(old_level)


def test_task_logger_lines_reach_the_task_parent_with_the_task_name_and_id(
    app: Celery, task_lines: Lines
) -> None:
    from celeriac.utils.log import get_task_logger

    logger = get_task_logger("proj.tasks.logging_test")
    assert logger.parent is logging.getLogger("celeriac.task")

    @app.task(name="t.logs")
    def logs() -> None:
        logger.info("working on it")

    result = logs.delay()
    run_one(app)
    (record,) = [r for r in task_lines.records if r.getMessage() == "working on it"]
    assert record.task_name == "t.logs"  # type: ignore[attr-defined]
    assert record.task_id == result.id  # type: ignore[attr-defined]
    assert record.name == "proj.tasks.logging_test"


def test_task_logger_outside_a_task_marks_the_fields_unknown(task_lines: Lines) -> None:
    from celeriac.utils.log import get_task_logger

    get_task_logger("proj.tasks.outside").warning("no task here")
    (record,) = [r for r in task_lines.records if r.getMessage() == "no task here"]
    assert (record.task_name, record.task_id) == ("???", "???")  # type: ignore[attr-defined]


def test_task_logger_stays_under_the_task_parent_when_its_package_logger_appears(
    task_lines: Lines,
) -> None:
    from celeriac.utils.log import get_task_logger

    logger = get_task_logger("fresh_pkg_for_test.sub.tasks")
    logging.getLogger("fresh_pkg_for_test.sub")  # the logging module re-parents children here
    logger.warning("still formatted as a task line")
    assert any(r.getMessage() == "still formatted as a task line" for r in task_lines.records)


def test_reserved_logger_name_is_refused_with_what_to_pass() -> None:
    from celeriac.utils.log import get_task_logger

    with pytest.raises(ConfigurationError, match=r"get_task_logger\(__name__\)"):
        get_task_logger("celeriac.task")


def test_get_logger_hangs_top_level_loggers_under_celeriac() -> None:
    from celeriac.utils.log import get_logger

    assert get_logger("toplevel_for_test").parent is logging.getLogger("celeriac")
    assert get_logger("celeriac.worker").parent is logging.getLogger("celeriac")


def test_current_task_is_the_running_task_and_nothing_outside(app: Celery) -> None:
    from celeriac import current_task

    @app.task(name="t.who", bind=True)
    def who(self: Any) -> list[Any]:
        return [current_task.name, current_task.request.id == self.request.id]  # type: ignore[union-attr]

    result = who.delay()
    run_one(app)
    assert result.get(timeout=1) == ["t.who", True]
    assert not current_task
    assert current_task._get_current_object() is None  # type: ignore[union-attr]


def test_current_app_is_the_app_made_last(memory_url: str) -> None:
    from celeriac import current_app

    made = Celery("made-last", broker=memory_url)
    try:
        assert current_app.main == "made-last"
        assert current_app._get_current_object() is made  # type: ignore[attr-defined]
        assert isinstance(current_app, Celery)
    finally:
        made.close()


def test_abort_stores_aborted_and_the_task_sees_it(app: Celery) -> None:
    from celeriac.contrib.abortable import ABORTED, AbortableAsyncResult, AbortableTask

    @app.task(name="t.long", bind=True, base=AbortableTask)
    def long_job(self: Any) -> str:
        return "stopped early" if self.is_aborted() else "ran to the end"

    result = long_job.delay()
    assert isinstance(result, AbortableAsyncResult)
    assert not result.is_aborted()
    result.abort()
    assert result.is_aborted()
    meta = app.backend.get_meta(result.id)
    assert meta is not None
    assert (meta["status"], meta["result"]) == (ABORTED, None)  # Celery's stored form
    run_one(app)
    assert result.get(timeout=1) == "stopped early"


def test_abortable_task_not_aborted_runs_to_the_end(app: Celery) -> None:
    from celeriac.contrib.abortable import AbortableTask

    @app.task(name="t.long2", bind=True, base=AbortableTask)
    def long_job(self: Any) -> str:
        return "stopped early" if self.is_aborted() else "ran to the end"

    result = long_job.delay()
    run_one(app)
    assert result.get(timeout=1) == "ran to the end"


CELERY_MODULE = '''\
"""A task module as a Celery project writes it."""
import celery
from celery import Celery, current_app, current_task, shared_task, states
from celery.app.control import Inspect
from celery.app.task import Task
from celery.canvas import chain, signature
from celery.contrib.abortable import AbortableTask
from celery.exceptions import Ignore, MaxRetriesExceededError, SoftTimeLimitExceeded
from celery.result import AsyncResult, allow_join_result
from celery.schedules import crontab, schedule
from celery.utils.log import get_task_logger

logger = get_task_logger(__name__)

app = Celery("proj", broker="BROKER", backend="BROKER")
app.conf.beat_schedule = {
    "quarterly": {"task": "proj.add", "schedule": crontab(minute="*/15", hour="9-17")},
    "often": {"task": "proj.add", "schedule": schedule(30)},
}


class LoggedTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        logger.error("failed: %s", exc)


@app.task(name="proj.add", base=LoggedTask, bind=True)
def add(self, x, y):
    logger.info("adding %s and %s", x, y)
    return [x + y, current_task.request.id == self.request.id, current_app.main]


@shared_task(name="proj.careful")
def careful():
    try:
        raise SoftTimeLimitExceeded()
    except SoftTimeLimitExceeded:
        return "cleaned up"


@celery.shared_task(name="proj.skip")
def skip():
    raise Ignore()


def pipeline():
    return chain(signature("proj.add", (1, 2)), signature("proj.add", (3,)))
'''


@pytest.fixture
def celery_style_module(tmp_path: Path, memory_url: str) -> Iterator[Any]:
    source = re.sub(r"\bcelery\b", "celeriac", CELERY_MODULE).replace("BROKER", memory_url)
    (tmp_path / "celery_style_tasks.py").write_text(source)
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module("celery_style_tasks")
        yield module
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("celery_style_tasks", None)
        module.app.close()


def test_module_with_celerys_imports_runs_once_they_say_celeriac(
    celery_style_module: Any,
) -> None:
    app = celery_style_module.app
    assert app.conf.beat_schedule["quarterly"]["schedule"].minute == {0, 15, 30, 45}
    result = celery_style_module.add.delay(2, 3)
    run_one(app)
    assert result.get(timeout=1) == [5, True, "proj"]
    assert celery_style_module.careful.apply().get() == "cleaned up"
    # the module's own app: shared_task's returned object is bound to whichever app
    # registered it last (see the report), so send through this app's registry
    skipped = app.tasks["proj.skip"].delay()
    run_one(app)
    assert app.backend.get_meta(skipped.id) is None
    assert celery_style_module.pipeline().tasks[0].task == "proj.add"
