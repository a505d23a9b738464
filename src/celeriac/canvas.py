"""Signatures and the canvas (chain, group, chord, map, starmap, chunks), with Celery's API
and its dict form, so a workflow travels inside messages and either side's worker runs it.

A signature is a dict: ``{"task", "args", "kwargs", "options", "subtask_type", "immutable"}``
(spec §3). Composite ones keep their parts in ``kwargs``: ``{"tasks": [...]}`` for chain and
group, ``{"header": <group>, "body": <signature>, "kwargs": {}}`` for chord, and
``{"task": <signature>, "it": [...]}`` for map and starmap (plus ``"n"`` for chunks).
``signature(d)`` rebuilds the right class from ``subtask_type``. Turning a canvas into
messages is canvas_apply.py's job.
"""

from __future__ import annotations

import copy
import itertools
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .stamping import StampingVisitor as StampingVisitor  # re-exported: Celery's import path

if TYPE_CHECKING:
    from .app import Celeriac
    from .result import AsyncResult, GroupResult
    from .task import Task

_S = TypeVar("_S", bound="Signature")
_TYPES: dict[str, type[Signature]] = {}
# a task's group decides which chord counts it: a merge never changes it once set
IMMUTABLE_OPTIONS = frozenset({"group_id", "stamped_headers"})


def _registered(name: str) -> Callable[[type[_S]], type[_S]]:
    def register(cls: type[_S]) -> type[_S]:
        _TYPES[name] = cls
        return cls

    return register


class Signature(dict[str, Any]):
    """One task call that is not sent yet: the name, arguments and options.

    ``add.s(2)`` is partial: ``.delay(3)`` (or a parent's result, in a chain) is put in front
    of its args. ``add.si(2, 3)`` is immutable and keeps its own args.
    """

    _app: Celeriac | None
    _type: Task | None

    def __init__(
        self,
        task: str | Task | Mapping[str, Any] | None = None,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        subtask_type: str | None = None,
        immutable: bool = False,
        app: Celeriac | None = None,
        **extra_options: Any,
    ) -> None:
        self._app = app
        self._type = None
        if isinstance(task, Mapping):
            super().__init__(task)
            self.setdefault("args", ())
            self.setdefault("kwargs", {})
            self.setdefault("options", {})
            self.setdefault("subtask_type", None)
            self.setdefault("immutable", False)
            return
        name = task
        if task is not None and not isinstance(task, str):
            name = task.name
            self._type = task
            self._app = app or task.app
        super().__init__(
            task=name,
            args=tuple(args or ()),
            kwargs=dict(kwargs or {}),
            options={**(options or {}), **extra_options},
            subtask_type=subtask_type,
            immutable=bool(immutable),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], app: Celeriac | None = None) -> Signature:
        """The signature a dict describes, as the class its ``subtask_type`` names."""
        kind = data.get("subtask_type")
        target = _TYPES.get(kind) if isinstance(kind, str) else None
        if target is not None and target is not cls:
            return target.from_dict(data, app=app)
        return Signature(data, app=app)

    # the dict's fields
    @property
    def task(self) -> str:
        return str(self["task"])

    @property
    def name(self) -> str:
        return self.task

    @property
    def args(self) -> tuple[Any, ...]:
        return tuple(self["args"] or ())

    @args.setter
    def args(self, value: Iterable[Any]) -> None:
        self["args"] = tuple(value)

    @property
    def kwargs(self) -> dict[str, Any]:
        value = self["kwargs"]
        if value is None:
            value = self["kwargs"] = {}
        return value  # type: ignore[no-any-return]

    @kwargs.setter
    def kwargs(self, value: Mapping[str, Any]) -> None:
        self["kwargs"] = dict(value)

    @property
    def options(self) -> dict[str, Any]:
        value = self["options"]
        if value is None:
            value = self["options"] = {}
        return value  # type: ignore[no-any-return]

    @options.setter
    def options(self, value: Mapping[str, Any]) -> None:
        self["options"] = dict(value)

    @property
    def subtask_type(self) -> str | None:
        value = self.get("subtask_type")
        return value if isinstance(value, str) else None

    @subtask_type.setter
    def subtask_type(self, value: str | None) -> None:
        self["subtask_type"] = value

    @property
    def immutable(self) -> bool:
        return bool(self.get("immutable"))

    @immutable.setter
    def immutable(self, value: bool) -> None:
        self["immutable"] = bool(value)

    @property
    def id(self) -> str | None:
        """The task id chosen in advance (``options["task_id"]``), once frozen."""
        value = self.options.get("task_id")
        return value if isinstance(value, str) else None

    @id.setter
    def id(self, value: str | None) -> None:
        self.options["task_id"] = value

    @property
    def app(self) -> Celeriac:
        if self._app is not None:
            return self._app
        from .app import default_app

        return default_app()

    @property
    def type(self) -> Task:
        """The registered task this signature calls (raises NotRegistered if unknown here)."""
        if self._type is None:
            self._type = self.app.lookup(self.task)
        return self._type

    # copies
    def _merge(
        self,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]:
        """Partial args go in front, kwargs and options on top (an immutable signature keeps
        its args and kwargs unless *force*)."""
        new_options = dict(self.options)
        for key, value in (options or {}).items():
            if key not in IMMUTABLE_OPTIONS or key not in new_options:
                new_options[key] = value
        args = tuple(args or ())
        kwargs = dict(kwargs or {})
        if self.immutable and not force:
            return self.args, dict(self.kwargs), new_options
        return args + self.args, {**self.kwargs, **kwargs}, new_options

    def clone(
        self: _S,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> _S:
        """A copy (nested signatures and options copied too), with partial args applied."""
        new_args, new_kwargs, new_options = self._merge(args, kwargs, options)
        data = {
            "task": self.task,
            "args": new_args,
            "kwargs": copy.deepcopy(new_kwargs),
            "options": copy.deepcopy(new_options),
            "subtask_type": self.subtask_type,
            "immutable": self.immutable,
        }
        clone = type(self).from_dict(data, app=self._app)
        clone._type = self._type
        return clone  # type: ignore[return-value]

    partial = clone

    def __deepcopy__(self, memo: dict[int, Any]) -> Signature:
        # the app is shared, never copied
        data = {key: copy.deepcopy(value, memo) for key, value in self.items()}
        clone = type(self).from_dict(data, app=self._app)
        clone._type = self._type
        return clone

    def set(self: _S, immutable: bool | None = None, **options: Any) -> _S:
        """Set options (``countdown``, ``queue``, ``task_id``...); returns the signature."""
        if immutable is not None:
            self.set_immutable(immutable)
        self.options.update(options)
        return self

    def set_immutable(self, immutable: bool) -> None:
        self.immutable = immutable

    def _append_option(self, key: str, value: Any) -> None:
        current = self.options.get(key)
        if current is None:
            current = []
        elif not isinstance(current, list):
            current = [current]
        if value not in current:
            current.append(value)
        self.options[key] = current

    def link(self, callback: Signature | Mapping[str, Any]) -> Signature | Mapping[str, Any]:
        """Run *callback* with this task's result when it succeeds."""
        self._append_option("link", callback)
        return callback

    def link_error(self, errback: Signature | Mapping[str, Any]) -> Signature | Mapping[str, Any]:
        """Run *errback* when this task fails (as Celery calls it: see worker/workflow.py)."""
        self._append_option("link_error", errback)
        return errback

    def on_error(self: _S, errback: Signature | Mapping[str, Any]) -> _S:
        self.link_error(errback)
        return self

    # stamping (stamping.py)
    def stamp(
        self, visitor: StampingVisitor | None = None, append_stamps: bool = False, **headers: Any
    ) -> None:
        """Stamp this signature and every task under it: *headers* and what *visitor*
        returns become stamps each message carries (``self.request.stamps``)."""
        from . import stamping

        stamping.stamp(self, visitor, append_stamps, headers)

    def stamp_links(
        self, visitor: StampingVisitor | None, append_stamps: bool = False, **headers: Any
    ) -> None:
        """Stamp the callbacks and errbacks linked to this signature."""
        from . import stamping

        stamping.stamp_links(self, visitor, append_stamps, headers)

    # ids chosen in advance
    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Signature | Mapping[str, Any] | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> AsyncResult | GroupResult:
        """Give this signature its task id now (keeping one it has) and return its result."""
        from . import protocol
        from .result import AsyncResult

        options = self.options
        task_id = options.get("task_id") or _id or protocol.new_id()
        options["task_id"] = task_id
        if root_id:
            options["root_id"] = root_id
        if parent_id:
            options["parent_id"] = parent_id
        options.setdefault("reply_to", reply_to_for(self.app))
        if group_id and "group_id" not in options:
            options["group_id"] = group_id
        if chord is not None:
            options["chord"] = chord
        if group_index is not None:
            options["group_index"] = group_index
        return AsyncResult(task_id, app=self.app, task_name=self.task)

    # composition
    def __or__(self, other: Any) -> Signature:  # type: ignore[override]
        if isinstance(other, group):
            single = other.unrolled()
            if single is None:
                return self
            if not isinstance(single, group):
                return chain(self, single, app=self._app)
            return chain(self, other, app=self._app)
        if isinstance(other, chain):
            return chain(self, *other.unchain_tasks(), app=self._app)
        if isinstance(other, Signature):
            return chain(self, other, app=self._app)
        return NotImplemented

    # sending and calling
    def delay(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        """Send it: partial *args* go in front of the signature's own, *options* on top."""
        from . import canvas_apply

        options = {key: value for key, value in options.items() if value is not None}
        if self.app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        merged_args, merged_kwargs, merged_options = self._merge(args, kwargs, options)
        return canvas_apply.send(self, merged_args, merged_kwargs, merged_options)

    def apply(
        self,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        """Run it here and now (``task.apply``): returns an EagerResult."""
        merged_args, merged_kwargs, merged_options = self._merge(args, kwargs, options)
        return self.type.apply(merged_args, merged_kwargs, task_id=merged_options.get("task_id"))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the task function in this process, like calling the task itself."""
        merged_args, merged_kwargs, _ = self._merge(args, kwargs)
        return self.type(*merged_args, **merged_kwargs)

    def __invert__(self) -> Any:
        return self.apply_async().get()

    # forms
    def as_dict(self) -> dict[str, Any]:
        """The plain dict (nested signatures too) that travels in a message."""
        plain: dict[str, Any] = as_plain(self)
        return plain

    def __repr__(self) -> str:
        return self.reprcall()

    def reprcall(self, *args: Any, **kwargs: Any) -> str:
        merged_args, merged_kwargs, _ = self._merge(args, kwargs)
        parts = [repr(arg) for arg in merged_args]
        parts += [f"{key}={value!r}" for key, value in merged_kwargs.items()]
        prefix = "%" if self.immutable else ""
        return f"{prefix}{self.task}({', '.join(parts)})"


@_registered("chain")
class chain(Signature):
    """Run tasks one after another, each getting the previous one's result in front of its
    args. ``chain(a.s(1), b.s(), c.s())`` is the same as ``a.s(1) | b.s() | c.s()``; its
    result is the last task's, with ``.parent`` leading back to the first."""

    def __init__(self, *tasks: Any, app: Celeriac | None = None, **options: Any) -> None:
        if len(tasks) == 1 and _is_iterable(tasks[0]):
            tasks = tuple(tasks[0])
        steps = _chain_shape([_as_signature(task, app) for task in tasks], app)
        super().__init__(
            "celery.chain", (), {"tasks": steps}, options, subtask_type="chain", app=app
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], app: Celeriac | None = None) -> Signature:
        kwargs = data.get("kwargs") or {}
        tasks = [maybe_signature(task, app=app) for task in kwargs.get("tasks") or ()]
        return cls(*tasks, app=app, **dict(data.get("options") or {}))

    @property
    def tasks(self) -> list[Signature]:
        tasks: list[Signature] = self.kwargs["tasks"]
        return tasks

    @tasks.setter
    def tasks(self, value: Iterable[Signature]) -> None:
        self.kwargs["tasks"] = list(value)

    @property
    def app(self) -> Celeriac:
        if self._app is None and self.tasks:
            return self.tasks[0].app
        return super().app

    def unchain_tasks(self) -> list[Signature]:
        """Copies of the steps, with the chain's link on the last and its link_error on all."""
        steps = [task.clone() for task in self.tasks]
        for callback in _as_list(self.options.get("link")):
            steps[-1].link(callback)
        for errback in _as_list(self.options.get("link_error")):
            for step in steps:
                step.link_error(errback)
        return steps

    def clone(
        self,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> chain:
        copied = super().clone(args, kwargs, **options)
        copied.tasks = [task.clone() for task in copied.tasks]
        return copied

    def __or__(self, other: Any) -> Signature:  # type: ignore[override]
        if isinstance(other, group):
            single = other.unrolled()
            if single is None:
                return self
            return chain(*self.unchain_tasks(), single, app=self._app)
        if isinstance(other, chain):
            return chain(*self.unchain_tasks(), *other.unchain_tasks(), app=self._app)
        if isinstance(other, Signature):
            return chain(*self.unchain_tasks(), other, app=self._app)
        return NotImplemented

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        from . import canvas_apply

        options = {key: value for key, value in options.items() if value is not None}
        if self.app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        return canvas_apply.apply_chain(self, tuple(args or ()), dict(kwargs or {}), options)

    def apply(
        self,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        from . import canvas_apply

        return canvas_apply.apply_chain_eagerly(self, tuple(args or ()), dict(kwargs or {}))

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Signature | Mapping[str, Any] | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> AsyncResult | GroupResult:
        from . import canvas_apply

        return canvas_apply.freeze_chain(self, _id, group_id, chord, root_id, group_index)

    def __repr__(self) -> str:
        if not self.tasks:
            return "<chain: empty>"
        return " | ".join(repr(task) for task in self.tasks)


@_registered("group")
class group(Signature):
    """Run tasks in parallel; the result is a GroupResult whose ``get()`` lists their values
    in order. ``group(...) | task`` is a chord."""

    def __init__(self, *tasks: Any, app: Celeriac | None = None, **options: Any) -> None:
        if len(tasks) == 1:
            only = tasks[0]
            if isinstance(only, group):
                tasks = tuple(only.tasks)
            elif isinstance(only, Signature | Mapping):
                tasks = (only,)
            elif _is_iterable(only):
                tasks = tuple(only)
        members = [_as_signature(task, app) for task in tasks]
        super().__init__(
            "celery.group", (), {"tasks": members}, options, subtask_type="group", app=app
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], app: Celeriac | None = None) -> Signature:
        kwargs = data.get("kwargs") or {}
        tasks = [maybe_signature(task, app=app) for task in kwargs.get("tasks") or ()]
        return cls(tasks, app=app, **dict(data.get("options") or {}))

    @property
    def tasks(self) -> list[Signature]:
        tasks: list[Signature] = self.kwargs["tasks"]
        return tasks

    @tasks.setter
    def tasks(self, value: Iterable[Signature]) -> None:
        self.kwargs["tasks"] = list(value)

    @property
    def app(self) -> Celeriac:
        if self._app is None and self.tasks:
            return self.tasks[0].app
        return super().app

    def __len__(self) -> int:
        return len(self.tasks)

    def unrolled(self) -> Signature | None:
        """None for an empty group, the only task of a one-task group, else the group."""
        if not self.tasks:
            return None
        if len(self.tasks) == 1:
            return self.tasks[0].clone(**self.options)
        return self

    def clone(
        self,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> group:
        copied = super().clone(args, kwargs, **options)
        copied.tasks = [task.clone() for task in copied.tasks]
        return copied

    def __or__(self, other: Any) -> Signature:  # type: ignore[override]
        if isinstance(other, group) and not other.tasks:
            return self
        if isinstance(other, Signature):
            return chord(self, other, app=self._app)
        return NotImplemented

    def set_immutable(self, immutable: bool) -> None:
        for task in self.tasks:
            task.set_immutable(immutable)

    def link(self, callback: Signature | Mapping[str, Any]) -> Signature | Mapping[str, Any]:
        """Linked to the first task only, made immutable (Celery's rule): use a chord to act
        on every result."""
        sig = _as_signature(callback, self._app).clone().set(immutable=True)
        return self.tasks[0].link(sig)

    def link_error(self, errback: Signature | Mapping[str, Any]) -> Signature | Mapping[str, Any]:
        """Linked to every task: any of them may fail."""
        sig = _as_signature(errback, self._app)
        for task in self.tasks:
            task.link_error(sig.clone())
        return errback

    def __call__(self, *args: Any, **options: Any) -> Any:
        return self.apply_async(args, **options)

    def apply_async(
        self,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        from . import canvas_apply

        if options.get("link") is not None:
            raise TypeError("cannot link a callback to a group: use a chord, group(...) | task")
        if options.get("link_error") is not None:
            raise TypeError("cannot link an errback to a group: call group.link_error(errback)")
        options = {key: value for key, value in options.items() if value is not None}
        if self.app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        return canvas_apply.apply_group(self, tuple(args or ()), dict(kwargs or {}), options)

    def apply(
        self,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> GroupResult:
        from .result import GroupResult

        gid = self.options.get("task_id") or options.get("task_id")
        results = [task.apply(args, kwargs) for task in self.tasks]
        return GroupResult(gid, results, app=self.app)

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Signature | Mapping[str, Any] | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> AsyncResult | GroupResult:
        from . import canvas_apply

        return canvas_apply.freeze_group(
            self, _id, group_id, chord, root_id, parent_id, group_index
        )

    def __repr__(self) -> str:
        return f"group([{', '.join(repr(task) for task in self.tasks)}])"


@_registered("chord")
class chord(Signature):
    """Run the header group, then the body with the list of header results (in order) in
    front of its args: ``chord(header)(body)`` or ``chord(header, body).delay()``."""

    def __init__(
        self,
        header: Any,
        body: Signature | Mapping[str, Any] | None = None,
        task: str = "celery.chord",
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        app: Celeriac | None = None,
        **options: Any,
    ) -> None:
        extra = dict(kwargs) if kwargs else {"kwargs": {}}
        header_group = _as_group(header, app)
        # Celery keeps a plain list of the header's tasks; a group with options of its own
        # (a frozen one, with its id) stays a group, as Celery's is once frozen
        header_value: Any = header_group if header_group.options else list(header_group.tasks)
        super().__init__(
            task,
            args,
            {
                **extra,
                "header": header_value,
                "body": _as_signature(body, app) if body is not None else None,
            },
            options,
            subtask_type="chord",
            app=app,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], app: Celeriac | None = None) -> Signature:
        kwargs = dict(data.get("kwargs") or {})
        header = kwargs.pop("header", None) or []
        body = kwargs.pop("body", None)
        return cls(
            _as_group(header, app),
            maybe_signature(body, app=app),
            task=str(data.get("task") or "celery.chord"),
            args=data.get("args"),
            kwargs=kwargs or None,
            app=app,
            **dict(data.get("options") or {}),
        )

    @property
    def header(self) -> group:
        """The header as a group (a plain list of tasks becomes one here, for good)."""
        value = self.kwargs["header"]
        if not isinstance(value, group):
            value = self.kwargs["header"] = group(list(value), app=self._app)
        return value

    @header.setter
    def header(self, value: group) -> None:
        self.kwargs["header"] = value

    @property
    def tasks(self) -> list[Signature]:
        value = self.kwargs["header"]
        tasks: list[Signature] = value.tasks if isinstance(value, group) else value
        return tasks

    @property
    def body(self) -> Signature | None:
        body: Signature | None = self.kwargs.get("body")
        return body

    @body.setter
    def body(self, value: Signature | None) -> None:
        self.kwargs["body"] = value

    @property
    def app(self) -> Celeriac:
        if self._app is not None:
            return self._app
        if self.tasks:
            return self.tasks[0].app
        if self.body is not None:
            return self.body.app
        return super().app

    def clone(
        self,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> chord:
        copied = super().clone(args, kwargs, **options)
        header = copied.kwargs["header"]
        if isinstance(header, group):
            copied.header = header.clone()
        else:
            copied.kwargs["header"] = [task.clone() for task in header]
        if copied.body is not None:
            copied.body = copied.body.clone()
        return copied

    def __or__(self, other: Any) -> Signature:  # type: ignore[override]
        if isinstance(other, Signature) and not isinstance(other, (group, chain)):
            if self.body is None:
                raise TypeError("this chord has no body yet: give it one before adding steps")
            extended = self.clone()
            extended.body = self.body | other
            return extended
        return super().__or__(other)

    def link(self, callback: Signature | Mapping[str, Any]) -> Signature | Mapping[str, Any]:
        return self._need_body().link(callback)

    def link_error(self, errback: Signature | Mapping[str, Any]) -> Signature | Mapping[str, Any]:
        """On the body (kept until the chord gets one), and with
        ``task_allow_error_cb_on_chord_header`` on each header task too (Celery's rule)."""
        from .canvas_apply import link_chord_error

        return link_chord_error(self, _as_signature(errback, self._app))

    def _need_body(self) -> Signature:
        if self.body is None:
            raise TypeError("this chord has no body: call chord(header)(body) or give body=")
        return self.body

    def set_immutable(self, immutable: bool) -> None:
        self.header.set_immutable(immutable)

    def __call__(self, body: Signature | None = None, **options: Any) -> Any:
        return self.apply_async((), {"body": body} if body is not None else {}, **options)

    def apply_async(
        self,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        from . import canvas_apply

        call_kwargs = dict(kwargs or {})
        body = _as_signature(call_kwargs.pop("body", None) or self._need_body(), self._app)
        options = {key: value for key, value in options.items() if value is not None}
        if self.app.conf.task_always_eager:
            return canvas_apply.apply_chord_eagerly(self, body, tuple(args or ()), call_kwargs)
        return canvas_apply.apply_chord(self, body, tuple(args or ()), call_kwargs, options)

    def apply(
        self,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        from . import canvas_apply

        call_kwargs = dict(kwargs or {})
        body = _as_signature(call_kwargs.pop("body", None) or self._need_body(), self._app)
        return canvas_apply.apply_chord_eagerly(self, body, tuple(args or ()), call_kwargs)

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Signature | Mapping[str, Any] | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> AsyncResult | GroupResult:
        from . import canvas_apply

        return canvas_apply.freeze_chord(
            self, _id, group_id, chord, root_id, parent_id, group_index
        )

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"


class _basemap(Signature):
    builtin = ""

    def __init__(
        self, task: Signature | Mapping[str, Any], it: Iterable[Any], **options: Any
    ) -> None:
        app = options.pop("app", None)
        super().__init__(
            self.builtin,
            (),
            {"task": _as_signature(task, app), "it": list(it)},
            options,
            subtask_type=None,  # as Celery's: the dict is a plain call of the built-in
            immutable=True,
            app=app,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], app: Celeriac | None = None) -> Signature:
        kwargs = data.get("kwargs") or {}
        return cls(kwargs["task"], kwargs.get("it") or [], app=app, **dict(data["options"] or {}))

    @property
    def app(self) -> Celeriac:
        if self._app is None:
            return _as_signature(self.kwargs["task"], None).app
        return super().app

    def apply_async(
        self,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        from . import canvas_apply

        options = {key: value for key, value in options.items() if value is not None}
        _, _, merged = self._merge(options=options)
        sent_kwargs = {"task": self.kwargs["task"], "it": list(self.kwargs["it"])}
        return canvas_apply.send(self, (), sent_kwargs, merged)


@_registered("xmap")
class xmap(_basemap):
    """``task.map(it)``: one message; the worker calls the task on each item in turn."""

    builtin = "celery.map"

    def __repr__(self) -> str:
        return f"[{self.kwargs['task'].task}(x) for x in {self.kwargs['it']!r}]"


@_registered("xstarmap")
class xstarmap(_basemap):
    """``task.starmap(it)``: like map, with each item unpacked as the arguments."""

    builtin = "celery.starmap"

    def __repr__(self) -> str:
        return f"[{self.kwargs['task'].task}(*x) for x in {self.kwargs['it']!r}]"


@_registered("chunks")
class chunks(Signature):
    """``task.chunks(it, n)``: a group of starmap messages, *n* items each."""

    def __init__(
        self, task: Signature | Mapping[str, Any], it: Iterable[Any], n: int, **options: Any
    ) -> None:
        if int(n) < 1:
            raise ValueError(f"chunks need a chunk size of at least 1, got {n!r}")
        app = options.pop("app", None)
        super().__init__(
            "celery.chunks",
            (),
            {"task": _as_signature(task, app), "it": list(it), "n": int(n)},
            options,
            subtask_type=None,  # as Celery's
            immutable=True,
            app=app,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], app: Celeriac | None = None) -> Signature:
        kwargs = data.get("kwargs") or {}
        return cls(
            kwargs["task"],
            kwargs.get("it") or [],
            kwargs["n"],
            app=app,
            **dict(data["options"] or {}),
        )

    @property
    def app(self) -> Celeriac:
        if self._app is None:
            return _as_signature(self.kwargs["task"], None).app
        return super().app

    def group(self) -> group:
        task = _as_signature(self.kwargs["task"], self._app)
        items = iter(self.kwargs["it"])
        size = int(self.kwargs["n"])
        parts = iter(lambda: list(itertools.islice(items, size)), [])
        return group([xstarmap(task, part, app=self._app) for part in parts], app=self._app)

    def __call__(self, **options: Any) -> Any:
        return self.apply_async(**options)

    def apply_async(
        self,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        return self.group().apply_async(args, kwargs, **{**self.options, **options})


def signature(varies: Any, *args: Any, **kwargs: Any) -> Signature:
    """A signature from a task name, a task, or a dict (a signature is copied)."""
    app = kwargs.get("app")
    if isinstance(varies, Signature):
        return varies.clone()
    if isinstance(varies, Mapping):
        return Signature.from_dict(varies, app=app)
    return Signature(varies, *args, **kwargs)


subtask = signature  # Celery's old name


def maybe_signature(
    value: Signature | Mapping[str, Any] | None, app: Celeriac | None = None, clone: bool = False
) -> Any:
    """A Signature for a dict (as a message carries it), the signature itself, or None."""
    if value is None:
        return None
    if isinstance(value, Signature):
        sig = value.clone() if clone else value
    elif isinstance(value, Mapping):
        sig = Signature.from_dict(value, app=app)
    else:
        raise TypeError(f"expected a signature or its dict form, got {type(value).__name__}")
    if app is not None:
        sig._app = app
    return sig


maybe_subtask = maybe_signature  # Celery's old name


def as_plain(value: Any) -> Any:
    """Plain JSON-ready data: signatures become dicts, tuples lists."""
    if isinstance(value, Mapping):
        return {key: as_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_plain(item) for item in value]
    return value


_REPLY_TO: dict[tuple[int, int], str] = {}


def reply_to_for(app: Celeriac) -> str:
    """The ``reply_to`` a frozen signature carries: one id per app and process, as Celery's
    ``thread_oid`` (the Redis backend never reads it)."""
    key = (id(app), os.getpid())
    value = _REPLY_TO.get(key)
    if value is None:
        value = _REPLY_TO[key] = str(uuid.uuid4())
    return value


def _as_signature(value: Any, app: Celeriac | None) -> Signature:
    if isinstance(value, Signature):
        return value
    if isinstance(value, Mapping):
        return Signature.from_dict(value, app=app)
    raise TypeError(
        f"a canvas takes signatures (task.s(...), task.si(...)) or their dicts, "
        f"got {type(value).__name__}: {value!r}"
    )


def _as_group(value: Any, app: Celeriac | None) -> group:
    if isinstance(value, group):
        return value
    if isinstance(value, Mapping):
        sig = Signature.from_dict(value, app=app)
        return sig if isinstance(sig, group) else group([sig], app=app)
    return group(_header_tasks(value, app), app=app)


def _header_tasks(value: Any, app: Celeriac | None) -> list[Signature]:
    if isinstance(value, (group, chain)):
        return list(value.tasks)
    if isinstance(value, Signature):
        return [value]
    return [_as_signature(task, app) for task in value]


def _is_iterable(value: Any) -> bool:
    if isinstance(value, (str, bytes, Mapping)):
        return False
    return isinstance(value, Iterable)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _chain_shape(steps: list[Signature], app: Celeriac | None) -> list[Signature]:
    """The steps as Celery's ``|`` puts them (so the dict form is Celery's): nested chains
    spliced, a one-task group unrolled, ``group, step`` made a chord, and a step after a
    chord moved into the chord's body. Sending re-splits a chord body (canvas_apply)."""
    shaped: list[Signature] = []
    for step in steps:
        inner = step.unchain_tasks() if isinstance(step, chain) else [step]
        for task in inner:
            _shape_append(shaped, task, app)
    return shaped


def _shape_append(shaped: list[Signature], step: Signature, app: Celeriac | None) -> None:
    if isinstance(step, group):
        unrolled = step.unrolled()
        if unrolled is not None and not isinstance(unrolled, group):
            _shape_append(shaped, unrolled, app)
            return
        if not _absorb_into_chord(shaped, step):
            shaped.append(step)
        return
    last = shaped[-1] if shaped else None
    if isinstance(last, group) and last.tasks:
        shaped.pop()
        upgraded = chord(last, step, app=app)
        if not _absorb_into_chord(shaped, upgraded):
            shaped.append(upgraded)
        return
    if not _absorb_into_chord(shaped, step):
        shaped.append(step)


def _absorb_into_chord(shaped: list[Signature], step: Signature) -> bool:
    """A step after a chord joins the chord's body (Celery's rule); False if none."""
    last = shaped[-1] if shaped else None
    if not isinstance(last, chord) or last.body is None:
        return False
    extended = last.clone()
    assert extended.body is not None
    extended.body = extended.body | step
    shaped[-1] = extended
    return True
