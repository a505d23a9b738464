"""A stored result is data anyone with write access to the backend can forge: decoding its
exception imports nothing on its say-so and builds only real exception classes the app
trusts (builtins, Celery's and celeriac's, the app's task modules, its allow-list)."""

from __future__ import annotations

import os  # noqa: F401  (the hostile results below name it through this module)
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery, errors
from celeriac.backends import decode_exception, encode_exception
from celeriac.errors import RemoteTaskError

APP = Celery("safe_decode", broker="memory://safe-decode")


@APP.task
def registered_here() -> None:
    return None


class TrustedError(Exception):
    """Defined in a module the app has a task in: rebuilt as itself."""


class NotAnError:
    """A class, but not an exception: never built from a stored result."""

    built = 0

    def __init__(self, *_args: Any) -> None:
        NotAnError.built += 1


def _stored(exc_type: str, exc_module: str, *message: Any) -> dict[str, Any]:
    return {"exc_type": exc_type, "exc_module": exc_module, "exc_message": list(message)}


@pytest.fixture
def fresh_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An importable module not imported yet; importing it would leave a marker file."""
    name = f"hostile_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "imported"
    (tmp_path / f"{name}.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n\nclass Boom(Exception):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


@pytest.mark.parametrize(
    ("exc_type", "exc_module"),
    [("system", "os"), ("Popen", "subprocess"), ("CalledProcessError", "subprocess")],
)
def test_a_result_naming_a_stdlib_callable_or_class_is_never_built(
    exc_type: str, exc_module: str
) -> None:
    exc = decode_exception(_stored(exc_type, exc_module, "echo pwned"), APP)
    assert isinstance(exc, RemoteTaskError)
    assert (exc.exc_type, exc.exc_module, exc.args) == (exc_type, exc_module, ("echo pwned",))


def test_a_result_naming_a_module_not_yet_imported_does_not_import_it(
    fresh_module: str, tmp_path: Path
) -> None:
    exc = decode_exception(_stored("Boom", fresh_module, "x"), APP)
    assert isinstance(exc, RemoteTaskError)
    assert fresh_module not in sys.modules
    assert not (tmp_path / "imported").exists()


def test_an_unimportable_module_gives_a_stand_in_with_type_module_and_message() -> None:
    exc = decode_exception(_stored("Boom", "nowhere.at.all", "disk full", 3), APP)
    assert isinstance(exc, RemoteTaskError)
    assert isinstance(exc, errors.CeleriacError)
    assert (type(exc).__name__, exc.exc_module, exc.args) == (
        "Boom",
        "nowhere.at.all",
        ("disk full", 3),
    )


def test_a_class_that_is_not_an_exception_is_never_constructed() -> None:
    before = NotAnError.built
    exc = decode_exception(_stored("NotAnError", __name__, "x"), APP)
    assert isinstance(exc, RemoteTaskError)
    assert NotAnError.built == before


def test_a_dotted_name_that_walks_to_a_function_is_not_called() -> None:
    exc = decode_exception(_stored("os.system", __name__, "echo pwned"), APP)
    assert isinstance(exc, RemoteTaskError)


def test_an_exception_in_a_module_the_app_has_tasks_in_is_rebuilt_as_itself() -> None:
    exc = decode_exception(encode_exception(TrustedError("kept", 1)), APP)
    assert (type(exc), exc.args) == (TrustedError, ("kept", 1))


def test_without_an_app_only_builtin_and_celery_names_are_rebuilt() -> None:
    assert isinstance(decode_exception(encode_exception(TrustedError("x"))), RemoteTaskError)
    assert type(decode_exception(_stored("KeyError", "builtins", "k"))) is KeyError


def test_a_builtin_name_that_is_not_an_exception_is_not_built() -> None:
    exc = decode_exception(_stored("open", "builtins", "/etc/passwd"), APP)
    assert isinstance(exc, RemoteTaskError)


def test_an_allow_listed_module_is_rebuilt_even_before_it_is_imported(
    fresh_module: str,
) -> None:
    app = Celery("allow", broker="memory://safe-decode-allow")
    app.conf.result_exception_allowlist = [fresh_module]
    exc = decode_exception(_stored("Boom", fresh_module, "x"), app)
    assert type(exc).__module__ == fresh_module
    assert not isinstance(exc, RemoteTaskError)


def test_an_allow_listed_class_path_admits_that_class_only(fresh_module: str) -> None:
    app = Celery("allow", broker="memory://safe-decode-allow-class")
    app.conf.result_exception_allowlist = [f"{fresh_module}.Boom"]
    assert type(decode_exception(_stored("Boom", fresh_module), app)).__name__ == "Boom"
    assert isinstance(decode_exception(_stored("Other", fresh_module), app), RemoteTaskError)


def test_an_allow_listed_non_exception_is_still_refused() -> None:
    app = Celery("allow", broker="memory://safe-decode-allow-path")
    app.conf.result_exception_allowlist = ["pathlib"]
    assert isinstance(decode_exception(_stored("Path", "pathlib", "/"), app), RemoteTaskError)


@pytest.mark.parametrize(
    "name",
    ["TimeoutError", "QueueNotFound", "InvalidTaskError", "Terminated", "AlreadyRegistered"],
)
def test_newer_celery_names_are_stored_under_celery_exceptions_and_read_back_as_ours(
    name: str,
) -> None:
    ours = getattr(errors, name)
    encoded = encode_exception(ours("why"))
    assert encoded["exc_module"] == "celery.exceptions"
    assert isinstance(decode_exception(encoded), ours)


def test_celeriac_own_errors_are_rebuilt_without_an_app() -> None:
    exc = decode_exception(_stored("InvalidMessage", "celeriac.errors", "bad"))
    assert type(exc) is errors.InvalidMessage


def test_async_result_get_raises_the_stand_in_for_a_forged_result(fresh_module: str) -> None:
    from celeriac.result import AsyncResult

    app = Celery("forged", broker="memory://safe-decode-forged", backend="memory://")
    task_id = str(uuid.uuid4())
    meta = {"status": "FAILURE", "result": _stored("Boom", fresh_module, "x"), "task_id": task_id}
    app.backend.store(task_id, meta, None)
    with pytest.raises(RemoteTaskError):
        AsyncResult(task_id, app=app).get(timeout=1)
    assert fresh_module not in sys.modules


@pytest.mark.parametrize(
    "name", ["SoftTimeLimitExceeded", "TimeLimitExceeded", "WorkerLostError", "Terminated"]
)
def test_billiard_s_names_stored_by_a_celery_worker_are_ours(name: str) -> None:
    exc = decode_exception(_stored(name, "billiard.exceptions", "why"))
    assert isinstance(exc, getattr(errors, name))


def test_a_class_reached_through_a_module_the_trusted_one_imported_is_not_built() -> None:
    # this module imports os (and so subprocess's siblings): os.error is OSError, defined
    # elsewhere; a task module's imports do not make their classes trusted
    exc = decode_exception(_stored("os.error", __name__, "x"), APP)
    assert isinstance(exc, RemoteTaskError)
    exc = decode_exception(_stored("pytest.fail.Exception", __name__, "x"), APP)
    assert isinstance(exc, RemoteTaskError)
