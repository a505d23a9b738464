"""Task exceptions in Celery's result form: encoded by type name, args and module; decoded
to the original type when this app trusts its module (a module it has tasks in, or its
allow-list), else to a stand-in with the same name."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from celeriac import Celery
from celeriac.backends import decode_exception, encode_exception
from celeriac.errors import (
    CeleriacError,
    InvalidMessage,
    NotRegistered,
    RemoteTaskError,
    TaskRevokedError,
    TimeLimitExceeded,
)


class ProjError(Exception):
    pass


class Outer:
    class InnerError(Exception):
        pass


class NeedsTwo(Exception):
    def __init__(self, first: str, second: str) -> None:
        super().__init__(first, second)


# an app with a task in this module: its exception classes may be rebuilt
APP = Celery("exc", broker="memory://exceptions")


@APP.task
def in_this_module() -> None:
    return None


def test_builtin_exception_encodes_as_celery_does() -> None:
    assert encode_exception(ValueError("bad")) == {
        "exc_type": "ValueError",
        "exc_message": ["bad"],
        "exc_module": "builtins",
    }


def test_custom_exception_encodes_its_module_and_all_args() -> None:
    assert encode_exception(ProjError("custom", 42)) == {
        "exc_type": "ProjError",
        "exc_message": ["custom", 42],
        "exc_module": __name__,
    }


def test_nested_exception_class_encodes_its_qualified_name() -> None:
    assert encode_exception(Outer.InnerError("x"))["exc_type"] == "Outer.InnerError"


def test_structured_args_keep_their_structure_as_in_celery() -> None:
    encoded = encode_exception(ValueError({"field": "bad", "codes": [1, 2]}, [None, 2.5]))
    assert encoded["exc_message"] == [{"field": "bad", "codes": [1, 2]}, [None, 2.5]]


def test_args_json_cannot_hold_are_encoded_as_their_repr() -> None:
    encoded = encode_exception(ProjError({1, 2}, object))
    assert encoded["exc_message"] == ["{1, 2}", "<class 'object'>"]
    orjson.dumps(encoded)


def test_not_registered_is_encoded_under_celery_exceptions_with_the_task_name() -> None:
    assert encode_exception(NotRegistered("proj.nope")) == {
        "exc_type": "NotRegistered",
        "exc_message": ["proj.nope"],
        "exc_module": "celery.exceptions",
    }


@pytest.mark.parametrize("why", ["revoked", "terminated", "expired"])
def test_revocation_is_encoded_as_celerys_task_revoked_error(why: str) -> None:
    assert encode_exception(TaskRevokedError(why)) == {
        "exc_type": "TaskRevokedError",
        "exc_message": [why],
        "exc_module": "celery.exceptions",
    }


def test_celeriac_only_error_keeps_its_own_module() -> None:
    assert encode_exception(InvalidMessage("bad body"))["exc_module"] == "celeriac.errors"


def test_builtin_exception_decodes_to_its_own_type_and_args() -> None:
    exc = decode_exception({"exc_type": "KeyError", "exc_message": ["k"], "exc_module": "builtins"})
    assert type(exc) is KeyError
    assert exc.args == ("k",)


def test_importable_custom_exception_decodes_to_the_original_type() -> None:
    exc = decode_exception(encode_exception(ProjError("custom", 42)), APP)
    assert type(exc) is ProjError
    assert exc.args == ("custom", 42)


def test_nested_exception_class_decodes_to_the_original_type() -> None:
    exc = decode_exception(encode_exception(Outer.InnerError("x")), APP)
    assert type(exc) is Outer.InnerError


def test_exception_whose_constructor_wants_other_arguments_keeps_type_and_args() -> None:
    exc = decode_exception(
        {"exc_type": "NeedsTwo", "exc_message": ["only"], "exc_module": __name__}, APP
    )
    assert type(exc) is NeedsTwo
    assert exc.args == ("only",)


def _stand_in(**overrides: Any) -> BaseException:
    value = {"exc_type": "Boom", "exc_message": ["a", 1], "exc_module": "proj_not_installed.errs"}
    value.update(overrides)
    return decode_exception(value, APP)


def test_exception_from_a_module_not_installed_decodes_to_a_stand_in_named_like_it() -> None:
    assert type(_stand_in()).__name__ == "Boom"


def test_stand_in_keeps_the_original_args_as_its_message() -> None:
    exc = _stand_in(exc_message=["disk full"])
    assert (exc.args, str(exc)) == (("disk full",), "disk full")


def test_stand_in_records_the_original_type_and_module() -> None:
    exc = _stand_in()
    assert isinstance(exc, RemoteTaskError)
    assert (exc.exc_type, exc.exc_module) == ("Boom", "proj_not_installed.errs")


def test_stand_in_can_be_caught_as_a_celeriac_error() -> None:
    assert isinstance(_stand_in(), CeleriacError)


def test_stand_in_encodes_back_to_the_original_name_and_module() -> None:
    assert encode_exception(_stand_in()) == {
        "exc_type": "Boom",
        "exc_message": ["a", 1],
        "exc_module": "proj_not_installed.errs",
    }


def test_missing_class_in_an_importable_module_decodes_to_a_stand_in() -> None:
    exc = _stand_in(exc_type="NoSuchError", exc_module=__name__)
    assert (type(exc).__name__, isinstance(exc, RemoteTaskError)) == ("NoSuchError", True)


def test_class_that_is_not_an_exception_is_never_constructed() -> None:
    exc = _stand_in(exc_type="Path", exc_module="pathlib", exc_message=["/etc"])
    assert isinstance(exc, RemoteTaskError)


def test_string_exc_message_is_the_single_argument() -> None:
    exc = decode_exception(
        {"exc_type": "ValueError", "exc_message": "plain text", "exc_module": "builtins"}
    )
    assert exc.args == ("plain text",)


def test_not_registered_from_celery_decodes_to_a_not_registered_with_the_name() -> None:
    exc = decode_exception(
        {
            "exc_type": "NotRegistered",
            "exc_message": ["proj.nope"],
            "exc_module": "celery.exceptions",
        }
    )
    assert type(exc).__name__ == "NotRegistered"
    assert exc.args == ("proj.nope",)


def test_time_limit_from_celery_decodes_to_a_time_limit_error() -> None:
    exc = decode_exception(
        {"exc_type": "TimeLimitExceeded", "exc_message": [10.0], "exc_module": "celery.exceptions"}
    )
    assert type(exc).__name__ == TimeLimitExceeded.__name__


def test_result_that_is_not_an_exception_mapping_decodes_to_a_remote_task_error() -> None:
    exc = decode_exception("something odd")
    assert isinstance(exc, RemoteTaskError)
    assert "something odd" in str(exc)


@pytest.mark.parametrize("name", ["ChordError", "TaskRevokedError", "MaxRetriesExceededError"])
def test_celery_named_errors_are_caught_by_either_package_s_class_when_both_are_loaded(
    name: str,
) -> None:
    import celery.exceptions

    import celeriac.errors

    exc = decode_exception(
        {"exc_type": name, "exc_message": ["x"], "exc_module": "celery.exceptions"}
    )
    assert isinstance(exc, getattr(celeriac.errors, name))
    assert isinstance(exc, getattr(celery.exceptions, name))
    assert exc.args == ("x",)
