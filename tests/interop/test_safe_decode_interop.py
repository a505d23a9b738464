"""Stored exceptions across the two packages, decoded safely: a real Celery worker's failures
read by a celeriac client (Celery's exception names as ours, a project's exception only when
the client trusts its module, never importing it otherwise), and celeriac's encoding of the
newer Celery names read by Celery's own decoder as Celery's classes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

import celery
import celery.exceptions
import pytest

import celeriac
from celeriac import errors
from celeriac.backends import encode_exception
from celeriac.errors import RemoteTaskError
from tests.interop.peers import CELERY_WORKER_FLAGS
from tests.support.workers import TESTS_DIR, WorkerProcess

WAIT_S = 15.0
NEWER_NAMES = ["TimeoutError", "QueueNotFound", "InvalidTaskError", "Terminated"]


@pytest.fixture
def worker(celery_worker_factory: Callable[..., WorkerProcess]) -> WorkerProcess:
    return celery_worker_factory("celery_hardening_tasks", "-P", "solo", *CELERY_WORKER_FLAGS)


@pytest.fixture
def forget_project_module() -> Iterator[None]:
    sys.modules.pop("hardening_errors", None)
    yield
    sys.modules.pop("hardening_errors", None)


# (a task raising Terminated is stored by Celery as REVOKED: not among these)
RAISED_IN_TASKS = ["TimeoutError", "QueueNotFound", "InvalidTaskError", "ChordError"]


def test_celery_s_exceptions_from_a_celery_worker_are_ours(
    worker: WorkerProcess, celeriac_client: celeriac.Celery
) -> None:
    names = [*RAISED_IN_TASKS, "TaskRevokedError", "SoftTimeLimitExceeded"]
    results = {
        name: celeriac_client.send_task("hard.raise_celery", (name, "why")) for name in names
    }
    decoded = {}
    for name, result in results.items():
        result.get(timeout=WAIT_S, propagate=False)
        decoded[name] = result.result
    wrong = {
        name: repr(exc)
        for name, exc in decoded.items()
        if not (isinstance(exc, getattr(errors, name)) and "why" in str(exc))
    }
    assert wrong == {}


def test_a_project_exception_is_a_stand_in_and_its_module_is_not_imported(
    worker: WorkerProcess, celeriac_client: celeriac.Celery, forget_project_module: None
) -> None:
    result = celeriac_client.send_task("hard.raise_project", ("disk full",))
    with pytest.raises(RemoteTaskError) as caught:
        result.get(timeout=WAIT_S)
    exc = caught.value
    assert (type(exc).__name__, exc.exc_module, exc.args) == (
        "ProjectError",
        "hardening_errors",
        ("disk full",),
    )
    assert "hardening_errors" not in sys.modules


def test_a_project_exception_is_itself_when_the_allow_list_names_its_module(
    worker: WorkerProcess,
    celeriac_client: celeriac.Celery,
    forget_project_module: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(TESTS_DIR / "support"))
    celeriac_client.conf.result_exception_allowlist = ["hardening_errors"]
    result = celeriac_client.send_task("hard.raise_project", ("disk full",))
    with pytest.raises(Exception) as caught:
        result.get(timeout=WAIT_S)
    project_error = sys.modules["hardening_errors"].ProjectError
    assert type(caught.value) is project_error
    assert caught.value.args == ("disk full",)


@pytest.mark.parametrize("name", NEWER_NAMES)
def test_celery_s_decoder_reads_our_newer_names_as_its_own_classes(
    name: str, celery_client: celery.Celery
) -> None:
    encoded = encode_exception(getattr(errors, name)("why"))
    decoded = celery_client.backend.exception_to_python(encoded)
    assert isinstance(decoded, getattr(celery.exceptions, name))
