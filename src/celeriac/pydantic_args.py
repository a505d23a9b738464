"""``@app.task(pydantic=True)``: arguments validated into their annotated models, a model
result dumped to plain data (Celery 5.5's pydantic tasks).

A message carries JSON, so a model travels as a dict. The worker validates each argument
whose annotation is a ``pydantic.BaseModel`` subclass (or ``Optional`` of one) into that
model before the call, and dumps a returned model when the return annotation names its
class. The sender dumps the models it is given, so ``task.delay(Model(...))`` works too.
A validation error fails that task (a ``ValidationError`` with pydantic's message); it
never reaches the worker's loop.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import ImproperlyConfigured


def _base_model() -> type[Any]:
    try:
        pydantic = importlib.import_module("pydantic")
    except ModuleNotFoundError as exc:
        raise ImproperlyConfigured(
            "@app.task(pydantic=True) needs pydantic: pip install 'celeriac[pydantic]'"
        ) from exc
    model: type[Any] = pydantic.BaseModel
    return model


def _unwrap_optional(annotation: Any) -> Any:
    """``X`` for ``Optional[X]`` / ``X | None``; the annotation itself otherwise."""
    origin = typing.get_origin(annotation)
    if origin is not typing.Union and origin is not types.UnionType:
        return annotation
    members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    return members[0] if len(members) == 1 else annotation


def _model_class(annotation: Any, base: type[Any]) -> type[Any] | None:
    annotation = _unwrap_optional(annotation)
    if isinstance(annotation, type) and issubclass(annotation, base):
        return annotation
    return None


class PydanticCall:
    """The wrapper around one task function; ``dump_arguments`` is the sender's half."""

    def __init__(
        self,
        fun: Callable[..., Any],
        task_name: str,
        *,
        strict: bool = False,
        context: Mapping[str, Any] | None = None,
        dump_kwargs: Mapping[str, Any] | None = None,
        app: Any = None,
    ) -> None:
        self.base = _base_model()
        self.fun = fun
        self.task_name = task_name
        self.strict = strict
        self.context = {**(context or {}), "celery_app": app, "celery_task_name": task_name}
        self.dump_kwargs = {"mode": "json", **(dump_kwargs or {})}
        self.signature = inspect.signature(fun)
        try:  # string annotations (from __future__ import annotations) read back as types
            hints: dict[str, Any] = typing.get_type_hints(fun)
        except (NameError, AttributeError, TypeError):
            hints = {}
        self.models: dict[str, type[Any]] = {}
        for name, param in self.signature.parameters.items():
            model = _model_class(hints.get(name, param.annotation), self.base)
            if model is not None:
                self.models[name] = model
        returns = hints.get("return", self.signature.return_annotation)
        self.returns = _model_class(returns, self.base)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        bound = self.signature.bind(*args, **kwargs)
        for name, model in self.models.items():
            value = bound.arguments.get(name)
            if name in bound.arguments and value is not None and not isinstance(value, model):
                bound.arguments[name] = model.model_validate(
                    value, strict=self.strict, context=self.context
                )
        value = self.fun(*bound.args, **bound.kwargs)
        if self.returns is not None and isinstance(value, self.returns):
            return value.model_dump(**self.dump_kwargs)
        return value

    def dump_arguments(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], with_self: bool = False
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Models the caller passed for model parameters, dumped to what the message can
        carry (others are left for the serializer to refuse)."""
        if not self.models:
            return tuple(args), dict(kwargs)
        names = [
            p.name
            for p in self.signature.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ][1 if with_self else 0 :]
        out_args = [
            self._dump(names[i] if i < len(names) else None, value) for i, value in enumerate(args)
        ]
        out_kwargs = {name: self._dump(name, value) for name, value in kwargs.items()}
        return tuple(out_args), out_kwargs

    def _dump(self, name: str | None, value: Any) -> Any:
        model = self.models.get(name) if name else None
        if model is None or not isinstance(value, model):
            return value
        return value.model_dump(**self.dump_kwargs)


def wrap(
    fun: Callable[..., Any], task_name: str, options: dict[str, Any], app: Any
) -> PydanticCall:
    """The pydantic wrapper of *fun*, taking its ``pydantic_*`` options out of *options*."""
    call = PydanticCall(
        fun,
        task_name,
        strict=bool(options.pop("pydantic_strict", False)),
        context=options.pop("pydantic_context", None),
        dump_kwargs=options.pop("pydantic_dump_kwargs", None),
        app=app,
    )
    functools.update_wrapper(call, fun)
    return call
