"""Task states, with Celery's names and meanings.

``state(x) < state(y)`` compares by how far along a task is (Celery's precedence): a
finished state outranks a running one, and a custom state (``"PROGRESS"``) sits between
the finished states and the built-in unfinished ones.
"""

from __future__ import annotations

__all__ = [
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
]

PENDING = "PENDING"
RECEIVED = "RECEIVED"
STARTED = "STARTED"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
RETRY = "RETRY"
REVOKED = "REVOKED"
REJECTED = "REJECTED"
IGNORED = "IGNORED"

READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
UNREADY_STATES = frozenset({PENDING, RECEIVED, STARTED, RETRY, REJECTED})
EXCEPTION_STATES = frozenset({RETRY, FAILURE, REVOKED})
PROPAGATE_STATES = frozenset({FAILURE, REVOKED})
# Celery's set: the states a stored result can hold (REJECTED and IGNORED are never stored)
ALL_STATES = frozenset({PENDING, RECEIVED, STARTED, SUCCESS, FAILURE, RETRY, REVOKED})

# highest first; None marks where any state not listed here (a custom one) ranks
PRECEDENCE: list[str | None] = [
    SUCCESS,
    FAILURE,
    None,
    REVOKED,
    STARTED,
    RECEIVED,
    REJECTED,
    RETRY,
    PENDING,
]
_RANK = {name: index for index, name in enumerate(PRECEDENCE)}
_CUSTOM_RANK = _RANK[None]


def precedence(state: str) -> int:
    """The rank of *state*: a lower number means further along."""
    return _RANK.get(state, _CUSTOM_RANK)


class state(str):  # Celery's lower-case name
    """A state name that compares by precedence: ``state(PENDING) < state(SUCCESS)``."""

    __slots__ = ()

    def __gt__(self, other: str) -> bool:
        return precedence(self) < precedence(other)

    def __ge__(self, other: str) -> bool:
        return precedence(self) <= precedence(other)

    def __lt__(self, other: str) -> bool:
        return precedence(self) > precedence(other)

    def __le__(self, other: str) -> bool:
        return precedence(self) >= precedence(other)
