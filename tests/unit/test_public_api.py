"""The public API: ``celeriac.__all__`` is pinned, and every name in it resolves."""

from __future__ import annotations

import pytest

import celeriac

EXPECTED_ALL = [
    "AsyncResult",
    "Celeriac",
    "Celery",
    "CeleriacError",
    "EagerResult",
    "Exchange",
    "GroupResult",
    "MaxRetriesExceededError",
    "NotRegistered",
    "Queue",
    "Reject",
    "Retry",
    "Signature",
    "SoftTimeLimitExceeded",
    "Task",
    "TaskRevokedError",
    "TimeLimitExceeded",
    "__version__",
    "chain",
    "chord",
    "chunks",
    "current_app",
    "current_task",
    "group",
    "maybe_signature",
    "shared_task",
    "signature",
    "states",
    "subtask",
    "uuid",
    "xmap",
    "xstarmap",
]


def test_all_is_exactly_the_pinned_public_names() -> None:
    assert sorted(celeriac.__all__) == sorted(EXPECTED_ALL)


def test_every_public_name_resolves_on_the_package() -> None:
    # current_task is a proxy that stands for None outside a task: look at the name itself
    missing = [name for name in celeriac.__all__ if name not in dir(celeriac)]
    missing += [name for name in celeriac.__all__ if not hasattr(celeriac, name)]
    assert missing == []


def test_celery_is_the_same_class_as_celeriac() -> None:
    assert celeriac.Celery is celeriac.Celeriac


def test_unknown_attribute_raises_attribute_error_naming_it() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        _ = celeriac.NoSuchThing
