"""``current_app`` and ``current_task``: Celery's two lazy proxies, for code that imports them.

New code should pass the app explicitly (``task.app``, ``self.request``); these exist so a
Celery project's ``from celery import current_app`` keeps working after the import changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..task import _current_request  # the request running in this slot

if TYPE_CHECKING:
    from ..app import Celeriac
    from ..task import Task

__all__ = ["Proxy", "current_app", "current_task", "get_current_app", "get_current_task"]

T = TypeVar("T")


class Proxy(Generic[T]):
    """Stands for whatever *find* returns at the moment it is used."""

    __slots__ = ("_find",)

    def __init__(self, find: Callable[[], T]) -> None:
        object.__setattr__(self, "_find", find)

    def _get_current_object(self) -> T:
        find: Callable[[], T] = object.__getattribute__(self, "_find")
        return find()

    @property  # type: ignore[misc]
    def __class__(self) -> type[Any]:  # so isinstance(current_app, Celery) holds, as in Celery
        return type(self._get_current_object())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get_current_object(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._get_current_object(), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._get_current_object(), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._get_current_object()(*args, **kwargs)  # type: ignore[operator]

    def __bool__(self) -> bool:
        return bool(self._get_current_object())

    def __eq__(self, other: object) -> bool:
        return bool(self._get_current_object() == other)

    def __ne__(self, other: object) -> bool:
        return bool(self._get_current_object() != other)

    def __hash__(self) -> int:
        return hash(self._get_current_object())

    def __repr__(self) -> str:
        return repr(self._get_current_object())

    def __str__(self) -> str:
        return str(self._get_current_object())

    def __dir__(self) -> list[str]:
        return dir(self._get_current_object())


def get_current_app() -> Celeriac:
    """The current app: the one created last (``set_as_current``), or a new default one."""
    from ..app import default_app

    return default_app()


def get_current_task() -> Task | None:
    """The task whose request runs in this slot (thread, greenlet, coroutine), else None."""
    request = _current_request.get()
    if request is None or not request.task or request.called_directly:
        return None
    from ..app import base

    for app in (*reversed(base._default), *list(base._apps)):
        task = app.tasks.get(request.task)
        if task is not None:
            return task
    return None


current_app: Celeriac = Proxy(get_current_app)  # type: ignore[assignment]
current_task: Task | None = Proxy(get_current_task)  # type: ignore[assignment]
