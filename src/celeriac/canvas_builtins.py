"""Celery's built-in canvas tasks, registered on every app under Celery's names:
``celery.map``, ``celery.starmap``, ``celery.chunks`` and ``celery.accumulate`` (the body
``Task.replace`` gives a group, on either side's worker). A Celery client's
``task.map(...)`` runs on a celeriac worker, and ours on a Celery worker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .canvas import chunks, maybe_signature

if TYPE_CHECKING:
    from .app import Celeriac


def register_builtins(app: Celeriac) -> None:
    """Add the built-ins to *app* (a task the app already has under that name wins)."""

    def run_map(task: Any, it: Any) -> list[Any]:
        # as Celery's: the task function is called on each item, in this worker
        function = maybe_signature(task, app=app).type
        return [function(item) for item in it]

    def run_starmap(task: Any, it: Any) -> list[Any]:
        function = maybe_signature(task, app=app).type
        return [function(*item) for item in it]

    def run_chunks(task: Any, it: Any, n: int) -> Any:
        # sends the starmap group from here; the stored result is the group's tuple form
        return chunks(task, it, n, app=app).apply_async().as_tuple()

    def accumulate(*args: Any, **kwargs: Any) -> Any:
        # as Celery's: the value at *index*, else all the args
        index = kwargs.get("index")
        return args[index] if index is not None else list(args)

    for name, function in (
        ("celery.map", run_map),
        ("celery.starmap", run_starmap),
        ("celery.chunks", run_chunks),
        ("celery.accumulate", accumulate),
    ):
        if name not in app.tasks:
            app.task(name=name)(function)
