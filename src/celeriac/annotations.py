"""``task_annotations``: change task attributes from the settings, as Celery does.

Three forms, alone or in a list: a dict of task name to attributes (``"*"`` for every
task), an object with ``annotate(task)`` returning a dict or None, or the dotted path of
such an object or class. For each task the first name match is applied, then the first
``"*"`` match, so ``"*"`` wins where both set an attribute (Celery's order). A key that
starts with ``@`` wraps the method of that name: ``{"@on_failure": around}`` makes the
task's ``on_failure`` be ``around(original_on_failure)``.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .config import load_object
from .errors import ImproperlyConfigured

if TYPE_CHECKING:
    from .task import Task


class MapAnnotation(dict[str, Any]):
    """The dict form: ``{"tasks.add": {"rate_limit": "10/s"}, "*": {...}}``."""

    def annotate(self, task: Task) -> dict[str, Any] | None:
        found = self.get(task.name)
        return dict(found) if found else None

    def annotate_any(self) -> dict[str, Any] | None:
        found = self.get("*")
        return dict(found) if found else None


def prepare(annotations: Any) -> list[Any]:
    """The setting as a list of objects with ``annotate(task)``."""
    if annotations is None:
        return []
    if not isinstance(annotations, (list, tuple)):
        annotations = [annotations]
    return [_expand(annotation) for annotation in annotations]


def _expand(annotation: Any) -> Any:
    if isinstance(annotation, Mapping):
        for name, attributes in annotation.items():
            if not isinstance(attributes, Mapping):
                raise ImproperlyConfigured(
                    f"task_annotations[{name!r}] is {type(attributes).__name__}; give a dict "
                    f"of task attributes such as {{'rate_limit': '10/s'}}"
                )
        return MapAnnotation(annotation)
    if isinstance(annotation, str):
        annotation = load_object(annotation)
        if isinstance(annotation, type):
            annotation = annotation()
    if not callable(getattr(annotation, "annotate", None)):
        raise ImproperlyConfigured(
            f"task_annotations holds {annotation!r}; give a dict, an object with an "
            f"annotate(task) method, or the dotted path of one"
        )
    return annotation


def matches(annotations: Iterable[Any], task: Task) -> list[dict[str, Any]]:
    """The attribute dicts for *task*: the first name match, then the first ``"*"`` match."""
    found: list[dict[str, Any]] = []
    for annotation in annotations:
        attributes = annotation.annotate(task)
        if attributes:
            found.append(dict(attributes))
            break
    for annotation in annotations:
        annotate_any = getattr(annotation, "annotate_any", None)
        attributes = annotate_any() if annotate_any is not None else None
        if attributes:
            found.append(dict(attributes))
            break
    return found


def apply(annotations: Iterable[Any], task: Task) -> None:
    """Set the matching attributes on *task*; applying the same annotations again changes
    nothing (a wrapped method is wrapped around the class's original each time)."""
    for attributes in matches(annotations, task):
        for key, value in attributes.items():
            if key.startswith("@"):
                _wrap_method(task, key[1:], value)
            else:
                setattr(task, key, value)


def _wrap_method(task: Task, name: str, around: Any) -> None:
    original = getattr(type(task), name, None)
    if not callable(original) or not callable(around):
        raise ImproperlyConfigured(
            f"task_annotations key '@{name}' for {task.name!r}: the task has no method "
            f"{name!r} or the value is not callable; give '@on_failure': around, where "
            f"around(method) returns the new method"
        )
    setattr(task, name, types.MethodType(around(original), task))
