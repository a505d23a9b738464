"""Choose a queue for a task: Celery's ``task_routes`` in all its forms.

A route is a dict (``{'queue': 'basic'}``) or a queue name. Routers are tried in order:
a dict mapping exact names or glob patterns (``'tasks.basic_tasks.*'``) or compiled regexes
to routes, a callable ``(name, args, kwargs, options, task=None, **kw)``, or a dotted path to
either. Explicit ``apply_async`` options win over the task's ``queue`` attribute, which wins
over routes, which win over ``task_default_queue``.

A route may also name an ``exchange`` and a ``routing_key`` instead of a queue: the queues
declared in ``task_queues`` (queues.py) that are bound to them receive the message.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .config import load_object
from .errors import ConfigurationError
from .queues import Queues

Route = dict[str, Any]
RouterFunc = Callable[..., Any]


def _as_route(value: Any, where: str) -> Route | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {"queue": value}
    if isinstance(value, Mapping):
        return dict(value)
    raise ConfigurationError(
        f"task_routes entry {where} is {type(value).__name__}; give a queue name or a dict "
        f"such as {{'queue': 'basic'}}"
    )


class _MapRouter:
    """Exact names first, then glob patterns and regexes in the order given."""

    def __init__(self, routes: Mapping[Any, Any]) -> None:
        self.exact: dict[str, Route] = {}
        self.patterns: list[tuple[re.Pattern[str], Route]] = []
        for key, value in routes.items():
            route = _as_route(value, repr(key))
            assert route is not None
            if isinstance(key, re.Pattern):
                self.patterns.append((key, route))
            elif isinstance(key, str) and any(c in key for c in "*?["):
                self.patterns.append((re.compile(fnmatch.translate(key)), route))
            elif isinstance(key, str):
                self.exact[key] = route
            else:
                raise ConfigurationError(f"task_routes key {key!r} is not a task name or pattern")

    def __call__(self, name: str, *args: Any, **kwargs: Any) -> Route | None:
        route = self.exact.get(name)
        if route is not None:
            return route
        for pattern, route in self.patterns:
            if pattern.match(name):
                return route
        return None


def _make_router(spec: Any) -> tuple[RouterFunc, bool]:
    """The router and whether its answer depends only on the task name (cacheable)."""
    if isinstance(spec, str):
        spec = load_object(spec)
        if isinstance(spec, type) and hasattr(spec, "route_for_task"):
            spec = spec()  # Celery's class routers, named by their path
    if hasattr(spec, "route_for_task"):
        return _old_style(spec), False
    if isinstance(spec, Mapping):
        return _MapRouter(spec), True
    if callable(spec):
        return spec, False
    raise ConfigurationError(
        f"task_routes holds {type(spec).__name__}; use a dict, a callable, or a list of them"
    )


def _old_style(router: Any) -> RouterFunc:
    """Celery's older router objects: ``route_for_task(task, args, kwargs)``."""

    def route(name: str, args: Any, kwargs: Any, *rest: Any, **options: Any) -> Any:
        return router.route_for_task(name, args, kwargs)

    return route


class Router:
    def __init__(self, routes: Any, default_queue: str, queues: Queues | None = None) -> None:
        self.default_queue = default_queue
        self.queues = queues if queues is not None else Queues(None, default_queue)
        specs: Sequence[Any]
        if routes is None:
            specs = []
        elif isinstance(routes, (list, tuple)):
            specs = routes
        else:
            specs = [routes]
        built = [_make_router(spec) for spec in specs]
        self.routers = [router for router, _ in built]
        self.cacheable = all(cacheable for _, cacheable in built)
        self._cache: dict[str, Route] = {}

    def route(
        self,
        name: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        task: Any = None,
    ) -> Route:
        if self.cacheable:
            cached = self._cache.get(name)
            if cached is None:
                cached = self._cache[name] = self._resolve(name, args, kwargs, options, task)
            return cached
        return self._resolve(name, args, kwargs, options, task)

    def _resolve(
        self,
        name: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        options: Mapping[str, Any] | None,
        task: Any,
    ) -> Route:
        for router in self.routers:
            try:
                found = router(name, args, kwargs or {}, dict(options or {}), task=task)
            except TypeError:  # a router with Celery's older (name, args, kwargs, options) form
                found = router(name, args, kwargs or {}, dict(options or {}))
            route = _as_route(found, f"returned for {name!r}")
            if route:
                if not route.get("exchange"):  # an exchange alone picks queues by binding
                    route.setdefault("queue", self.default_queue)
                return route
        return {"queue": self.default_queue}
