"""What ``apply_async`` and ``send_task`` accept, checked before anything is sent: each
wrong argument or option fails at the call with a message saying what to pass instead."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from .. import protocol
from ..errors import InvalidTaskOptions

if TYPE_CHECKING:
    from ..task import Task

SEND_OPTIONS = frozenset(
    {
        "countdown",
        "eta",
        "expires",
        "queue",
        "routing_key",
        "exchange",
        "priority",
        "task_id",
        "headers",
        "ignore_result",
        "link",
        "link_error",
        "serializer",
        "time_limit",
        "soft_time_limit",
        "shadow",
        "retries",
        "root_id",
        "parent_id",
        "group_id",
        "group_index",
        "chain",
        "chord",
        "reply_to",
        "retry",
        "retry_policy",
        "add_to_parent",
        "task",
        "connection",
        "producer",
        "compression",
        "exchange_type",
        "declare",
        "mandatory",
        "immediate",
        "delivery_mode",
        "stamped_headers",
        "stamps",
        "argsrepr",
        "kwargsrepr",
    }
)


def check_call(
    name: str, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if args is None:
        args = ()
    if isinstance(args, (str, bytes)) or not isinstance(args, (list, tuple)):
        raise InvalidTaskOptions(
            f"args for {name!r} must be a list or tuple, got {type(args).__name__}"
        )
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping):
        raise InvalidTaskOptions(f"kwargs for {name!r} must be a dict, got {type(kwargs).__name__}")
    if kwargs and not all(isinstance(key, str) for key in kwargs):
        raise InvalidTaskOptions(f"kwargs keys for {name!r} must be strings")
    return tuple(args), dict(kwargs)


def check_options(name: str, options: Mapping[str, Any]) -> None:
    if not SEND_OPTIONS.issuperset(options):
        unknown = set(options) - SEND_OPTIONS
        raise InvalidTaskOptions(
            f"unknown option(s) {sorted(unknown)} for {name!r}; "
            f"apply_async takes {', '.join(sorted(SEND_OPTIONS - {'task'}))}"
        )


def check_many(name: str, options: Mapping[str, Any]) -> None:
    if not isinstance(name, str) or not name:
        raise InvalidTaskOptions(f"task name must be a non-empty string, got {name!r}")
    check_options(name, options)
    if options.get("task_id"):
        raise InvalidTaskOptions("send_many gives each message its own id; drop task_id")


def check_arguments(task: Task, name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    try:
        task.check_arguments(args, kwargs)
    except TypeError as exc:
        raise TypeError(f"{name}() called with arguments that do not fit: {exc}") from None


def given_queue(queue: Any) -> Any:
    """A queue name or a Queue object (ours or kombu's); None when none was given."""
    if queue is None or queue == "":
        return None
    name = getattr(queue, "name", queue)
    if not isinstance(name, str) or not name:
        raise InvalidTaskOptions(f"queue must be a non-empty string, got {queue!r}")
    return queue


def priority(*candidates: Any) -> int:
    for value in candidates:
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
            raise InvalidTaskOptions(f"priority must be an integer from 0 to 9, got {value!r}")
        return min(value, 9)
    return 0


def seconds(option: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidTaskOptions(f"{option} must be a number of seconds, got {value!r}")
    return value


def aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def eta(eta: Any, countdown: Any) -> datetime | None:
    if countdown is not None:
        if isinstance(countdown, bool) or not isinstance(countdown, (int, float)):
            raise InvalidTaskOptions(f"countdown must be a number of seconds, got {countdown!r}")
        return datetime.now(timezone.utc) + timedelta(seconds=countdown)
    if eta is None:
        return None
    if isinstance(eta, str):
        parsed = protocol.parse_time(eta)
        if parsed is None:
            raise InvalidTaskOptions(f"eta {eta!r} is not an ISO-8601 time")
        return parsed
    if not isinstance(eta, datetime):
        raise InvalidTaskOptions(f"eta must be a datetime, got {type(eta).__name__}")
    return aware(eta)


def expires(expires: Any) -> datetime | None:
    if expires is None:
        return None
    if isinstance(expires, bool):
        raise InvalidTaskOptions(f"expires must be seconds or a datetime, got {expires!r}")
    if isinstance(expires, (int, float)):
        return datetime.now(timezone.utc) + timedelta(seconds=expires)
    if isinstance(expires, datetime):
        return aware(expires)
    if isinstance(expires, str):
        parsed = protocol.parse_time(expires)
        if parsed is not None:
            return parsed
    raise InvalidTaskOptions(f"expires must be seconds or a datetime, got {expires!r}")


def signatures(value: Any) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        as_dict = item.as_dict() if hasattr(item, "as_dict") else item
        if not isinstance(as_dict, Mapping):
            raise InvalidTaskOptions(f"link/link_error take signatures, got {type(item).__name__}")
        out.append(dict(as_dict))
    return out
