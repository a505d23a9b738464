"""The application: settings, the task registry, routing, and the broker and backend it opens."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .. import lifecycle, protocol, serialization, signals
from ..annotations import apply as apply_annotations
from ..annotations import prepare as prepare_annotations
from ..backends import Backend, make_backend
from ..brokers import Broker, make_broker
from ..canvas_builtins import register_builtins
from ..config import DEFAULT_BROKER_URL, Settings, load_object
from ..errors import (
    DuplicateTaskNameWarning,
    ImproperlyConfigured,
    InvalidTaskOptions,
    NotRegistered,
)
from ..fixups import Fixup, fixups_for
from ..fixups.django import settings_to_read
from ..flow import unique as flow_unique
from ..flow.limits import check_task as check_flow
from ..queues import Queues
from ..result import AsyncResult
from ..routing import Router
from ..task import Task as TaskBase
from ..task import _current_request, add_to_parent_trail
from . import modules as task_modules
from . import send_checks as checks

if TYPE_CHECKING:
    from ..canvas import Signature
    from ..control import Control

F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger(__name__)

_apps: weakref.WeakSet[Celeriac] = weakref.WeakSet()
_default: list[Celeriac] = []
_shared: list[tuple[Callable[..., Any], dict[str, Any]]] = []
_lock = threading.Lock()

SEND_MANY_BATCH = 1000  # messages per pipelined publish in send_many


def default_app() -> Celeriac:
    """The most recently created app (Celery's current_app), creating one if there is none."""
    with _lock:
        if _default:
            return _default[-1]
    return Celeriac()


class Celeriac:
    """A celeriac application. ``Celery`` is the same class under Celery's name."""

    Task: type[TaskBase] = TaskBase

    def __init__(
        self,
        main: str | None = None,
        broker: str | None = None,
        backend: str | None = None,
        include: Sequence[str] | None = None,
        config_source: object | str | None = None,
        task_cls: type[TaskBase] | str | None = None,
        set_as_current: bool = True,
        namespace: str | None = None,
        **settings: Any,
    ) -> None:
        self.main = main
        self.namespace = namespace
        self.conf = Settings()
        if config_source is not None:
            self.conf.from_object(config_source, namespace=namespace)
        if task_cls is not None:
            self.Task = _task_class(task_cls)
        if broker:
            self.conf.broker_url = broker
        if backend:
            self.conf.result_backend = backend
        if include:
            self.conf.include = tuple(include)
        for name, value in settings.items():
            self.conf[name] = value
        self.tasks: dict[str, TaskBase] = {}
        self.client_name = f"celeriac.client.{os.getpid()}"
        self._broker: Broker | None = None
        self._backend: Backend | None = None
        self._router: Router | None = None
        self._router_version = -1
        self._factories: dict[str, tuple[tuple[Any, ...], protocol.EnvelopeFactory]] = {}
        self._autodiscover: list[tuple[task_modules.Packages, str | None]] = []
        self._fixups: list[Fixup] = fixups_for(self, config_source)
        self._pid = os.getpid()
        self._sending = threading.local()  # .batch: messages held by publishing_together
        with _lock:
            _apps.add(self)
            if set_as_current:
                _default.append(self)
                del _default[:-1]
            shared = list(_shared)
        for fun, options in shared:
            self._register(fun, options)
        register_builtins(self)  # celery.map, celery.starmap, celery.chunks

    def __repr__(self) -> str:
        return f"<Celeriac {self.main or '__main__'} at {id(self):#x}>"

    # configuration
    def config_from_object(
        self,
        obj: object | str,
        silent: bool = False,
        force: bool = False,
        namespace: str | None = None,
    ) -> None:
        """Read settings now (``force`` is accepted for Celery's signature and changes
        nothing); ``silent`` ignores a module that cannot be imported."""
        namespace = namespace or self.namespace
        try:
            self.conf.from_object(settings_to_read(obj, namespace), namespace=namespace)
        except ImproperlyConfigured:
            if not silent:
                raise
            return
        if not self._fixups:  # config_from_object("django.conf:settings") switches Django on
            self._fixups = fixups_for(self, obj)
        self._reset_connections()
        self.annotate_tasks()

    def config_from_envvar(self, variable: str, silent: bool = False, force: bool = False) -> None:
        value = os.environ.get(variable)
        if not value:
            if silent:
                return
            raise ImproperlyConfigured(
                f"environment variable {variable} is not set; set it to a module name"
            )
        self.config_from_object(value, silent=silent)

    @property
    def broker_url(self) -> str:
        url = self.conf.resolved("broker_url")
        return str(url) if url else DEFAULT_BROKER_URL

    @property
    def backend_url(self) -> str:
        url = self.conf.resolved("result_backend")
        return str(url) if url else self.broker_url

    # connections, opened lazily and again in each forked child
    @property
    def broker(self) -> Broker:
        self._check_fork()
        if self._broker is None:
            self._broker = make_broker(self.broker_url, self.conf, client_name=self.client_name)
        return self._broker

    @property
    def backend(self) -> Backend:
        self._check_fork()
        if self._backend is None:
            self._backend = make_backend(self.backend_url, self.conf, client_name=self.client_name)
        return self._backend

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            # in a forked child: drop the parent's clients without closing their sockets
            self._broker = None
            self._backend = None
            self._pid = os.getpid()

    def _reset_connections(self) -> None:
        self.close()
        self._router = None

    def close(self) -> None:
        if self._pid != os.getpid():
            self._broker = self._backend = None
            return
        if self._broker is not None:
            self._broker.close()
        if self._backend is not None:
            self._backend.close()
        self._broker = None
        self._backend = None

    @property
    def router(self) -> Router:
        """task_routes and task_queues, read again when a setting changes."""
        router = self._router
        if router is None or self._router_version != self.conf.version:
            conf = self.conf
            queues = Queues(
                conf.task_queues,
                default_queue=conf.task_default_queue,
                default_exchange=conf.task_default_exchange,
                default_exchange_type=conf.task_default_exchange_type,
                default_routing_key=conf.task_default_routing_key,
                create_missing=bool(conf.task_create_missing_queues),
            )
            router = self._router = Router(conf.task_routes, conf.task_default_queue, queues)
            self._router_version = conf.version
            if conf.task_send_sent_event:  # task-sent events (events/sent.py)
                from ..events.sent import watch

                watch(self)
        return router

    @property
    def queues(self) -> Queues:
        """The declared queues (``task_queues``); Celery's ``app.amqp.queues``."""
        return self.router.queues

    # task registry
    @overload
    def task(self, fun: F) -> TaskBase: ...

    @overload
    def task(self, fun: None = None, **options: Any) -> Callable[[F], TaskBase]: ...

    def task(self, fun: Callable[..., Any] | None = None, **options: Any) -> Any:
        """Register a function as a task: ``@app.task`` or ``@app.task(name=..., bind=True)``."""
        if fun is not None:
            return self._register(_callable(fun), options)

        def decorate(inner: Callable[..., Any]) -> TaskBase:
            return self._register(inner, options)

        return decorate

    def _register(self, fun: Callable[..., Any], options: Mapping[str, Any]) -> TaskBase:
        options = dict(options)
        name = options.pop("name", None) or self.gen_task_name(fun.__name__, fun.__module__)
        base = options.pop("base", None) or self.Task
        if not (isinstance(base, type) and issubclass(base, TaskBase)):
            raise ImproperlyConfigured(f"base= for task {name!r} must be a Task subclass")
        existing = self.tasks.get(name)
        first = getattr(existing, "_decorated", None)
        if existing is not None and first is not None:
            # Celery keeps the first callable registered under a name (5.7 warns)
            if first is not fun:
                _warn_duplicate(name, first, fun, "was not registered")
            return existing
        task = base(self, fun, name, **options)
        task._decorated = fun  # type: ignore[attr-defined]
        self.tasks[name] = task
        self._annotate(task)
        return task

    def annotate_tasks(self) -> None:
        """Apply ``task_annotations`` to every registered task (done at registration, after
        ``config_from_object`` and when a worker has imported its task modules)."""
        for task in list(self.tasks.values()):
            self._annotate(task)

    def _annotate(self, task: TaskBase) -> None:
        setting = self.conf.task_annotations
        if setting:
            apply_annotations(prepare_annotations(setting), task)
        check_flow(task, self.conf)  # a bad rate_limit or key fails here, naming the task

    def gen_task_name(self, name: str, module: str) -> str:
        if module == "__main__" and self.main:
            module = self.main
        return f"{module}.{name}"

    def register_task(self, task: TaskBase | type[TaskBase], **options: Any) -> TaskBase:
        """Register a class-based task (``app.register_task(MyTask())``; a class is made
        into its instance): it gets this app, and a name from its class when it has none."""
        if isinstance(task, type) and issubclass(task, TaskBase):
            task = task(**options)
        if not isinstance(task, TaskBase):
            raise ImproperlyConfigured(
                f"register_task takes a Task instance or subclass, got {type(task).__name__}"
            )
        task.bind_to(self)
        existing = self.tasks.get(task.name)
        if existing is not None and existing is not task:
            _warn_duplicate(task.name, existing, task, "replaced the existing one")
        self.tasks[task.name] = task
        self._annotate(task)
        return task

    def autodiscover_tasks(
        self,
        packages: Iterable[str] | Callable[[], Iterable[str]] | None = None,
        related_name: str | None = "tasks",
        force: bool = False,
    ) -> list[str] | None:
        """Find ``<package>.tasks`` in each package when the worker imports task modules.

        *packages* may be a list, or a callable returning one (read only then); with none,
        every app in Django's INSTALLED_APPS is searched. ``related_name=None`` imports the
        packages themselves. ``force=True`` searches now and returns the modules found.
        """
        if force:
            return self._discover(packages, related_name)
        self._autodiscover.append((packages, related_name))
        return None

    def _discover(self, packages: task_modules.Packages, related_name: str | None) -> list[str]:
        if packages is None:
            for fixup in self._fixups:
                fixup.before_import()
            names = [name for fixup in self._fixups for name in fixup.autodiscover_packages()]
            if not self._fixups:
                logger.warning(
                    "autodiscover_tasks() with no packages searches Django's INSTALLED_APPS, "
                    "but this is not a Django project (DJANGO_SETTINGS_MODULE is not set); "
                    "pass the packages: app.autodiscover_tasks(['proj.orders', ...])"
                )
        else:
            names = list(packages() if callable(packages) else packages)
        return task_modules.discover(names, related_name)

    def import_task_modules(self) -> list[str]:
        """What a worker does before it takes work: set the framework up (``django.setup()``),
        send ``import_modules``, then import the autodiscovered modules, ``imports`` and
        ``include``. Returns the module names. A module that fails to import raises
        ImproperlyConfigured with one line naming it and the error."""
        if not self._fixups:  # DJANGO_SETTINGS_MODULE may be set after the app was made
            self._fixups = fixups_for(self)
        for fixup in self._fixups:
            fixup.before_import()
        signals.import_modules.send(sender=self)
        found: list[str] = []
        for packages, related_name in self._autodiscover:
            found.extend(self._discover(packages, related_name))
        for name in (*self.conf.imports, *self.conf.include):
            task_modules.import_task_module(name)
            found.append(name)
        for fixup in self._fixups:
            fixup.after_import()
        self.annotate_tasks()
        return found

    def lookup(self, name: str) -> TaskBase:
        try:
            return self.tasks[name]
        except KeyError:
            raise NotRegistered(name) from None

    # sending
    def send_task(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Send a task by name; returns its AsyncResult at once."""
        if not isinstance(name, str) or not name:
            raise InvalidTaskOptions(f"task name must be a non-empty string, got {name!r}")
        args, kwargs = checks.check_call(name, args, kwargs)
        if options:
            checks.check_options(name, options)
        task: TaskBase | None = options.pop("task", None) or self.tasks.get(name)
        if task is not None:
            checks.check_arguments(task, name, args, kwargs)
        task_id = options.get("task_id") or protocol.new_id()
        if task is not None and task.unique_for:  # flow control: one at a time per key
            holder = flow_unique.claim(self, task, args, kwargs, task_id)
            if holder is not None:
                return AsyncResult(holder, app=self, task_name=name)
        factory = self._plain_factory(name, task) if not options else None
        targets: tuple[str, ...] = ()
        if factory is not None:  # delay(): routing and options worked out once per task
            send = factory.options
        else:
            targets, send = self._send_options(name, args, kwargs, options, task, task_id)
            factory = protocol.EnvelopeFactory(name, send, self._content_type(task, options))
        envelope = factory.build(task_id, args, kwargs)
        watched = None
        if lifecycle.task_publishing.hooks or lifecycle.task_published.hooks:
            watched = lifecycle.publishing(self, name, send.queue, envelope, send.priority)
            envelope = watched.encode()  # with what before_task_publish changed
        batch: list[tuple[str, bytes, int]] | None = getattr(self._sending, "batch", None)
        if len(targets) > 1:  # a topic exchange bound to several queues: one copy each
            with self.publishing_together():
                self._sending.batch.extend((queue, envelope, send.priority) for queue in targets)
        elif batch is not None:
            batch.append((send.queue, envelope, send.priority))
        else:
            self.broker.publish(send.queue, envelope, send.priority)
        if watched is not None:
            lifecycle.published(watched)
        return AsyncResult(task_id, app=self, task_name=name)

    @contextlib.contextmanager
    def publishing_together(self) -> Iterator[None]:
        """Hold the messages this thread sends inside the block and publish them when it
        ends, in pipelined batches (one round trip per 1,000 on Redis): how a group sends its
        members. A nested block joins the outer one. If the block raises, none of them is
        published."""
        if getattr(self._sending, "batch", None) is not None:
            yield
            return
        batch: list[tuple[str, bytes, int]] = []
        self._sending.batch = batch
        try:
            yield
        finally:
            self._sending.batch = None
        for start in range(0, len(batch), SEND_MANY_BATCH):
            self.broker.publish_many(batch[start : start + SEND_MANY_BATCH])

    def send_many(
        self,
        name: str,
        calls: Iterable[Sequence[Any]],
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> list[AsyncResult]:
        """Send one message per item of *calls* (each the positional args of one call, like
        ``starmap``), all with the same *kwargs* and options, in pipelined batches: the bulk
        path. Returns the AsyncResults in order. Each message is the one ``send_task`` would
        send; only the round trips are shared."""
        checks.check_many(name, options)
        add_to_parent = bool(options.pop("add_to_parent", True))
        task: TaskBase | None = options.pop("task", None) or self.tasks.get(name)
        # a topic exchange may copy each message, a publish view may change it, a unique task
        # takes its lock per call: one by one
        unique = task is not None and task.unique_for
        if self.router.queues.fans_out or lifecycle.publishing_watched() or unique:
            return self._send_each(name, calls, kwargs, task, options, add_to_parent)
        results: list[AsyncResult] = []
        batch: list[tuple[str, bytes, int]] = []
        shared: protocol.EnvelopeFactory | None = None
        per_call = not (
            self.router.cacheable or options.get("queue") or (task is not None and task.queue)
        )
        parent = _current_request.get()
        _, shared_kwargs = checks.check_call(name, (), kwargs)  # one copy, read by every call
        for call in calls:
            if type(call) is tuple:  # the common case: no copy, nothing to check
                args, call_kwargs = call, shared_kwargs
            else:
                args, call_kwargs = checks.check_call(name, call, shared_kwargs)
            if task is not None:
                checks.check_arguments(task, name, args, call_kwargs)
            task_id = protocol.new_id()
            factory = shared
            if factory is None:
                factory = self._many_factory(name, args, call_kwargs, options, task, parent)
                if not per_call:
                    shared = factory
            send = factory.options
            batch.append((send.queue, factory.build(task_id, args, call_kwargs), send.priority))
            results.append(AsyncResult(task_id, app=self, task_name=name))
            if len(batch) >= SEND_MANY_BATCH:
                self.broker.publish_many(batch)
                batch = []
        if batch:
            self.broker.publish_many(batch)
        if add_to_parent and parent is not None:
            for result in results:
                add_to_parent_trail(result)
        return results

    def _send_each(
        self,
        name: str,
        calls: Iterable[Sequence[Any]],
        kwargs: Mapping[str, Any] | None,
        task: TaskBase | None,
        options: Mapping[str, Any],
        add_to_parent: bool,
    ) -> list[AsyncResult]:
        with self.publishing_together():
            results = [self.send_task(name, call, kwargs, task=task, **options) for call in calls]
        if add_to_parent:
            for result in results:
                add_to_parent_trail(result)
        return results

    def _many_factory(
        self,
        name: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        options: Mapping[str, Any],
        task: TaskBase | None,
        parent: Any,
    ) -> protocol.EnvelopeFactory:
        _, send = self._send_options(name, args, kwargs, options, task, "")
        if not options.get("root_id") and parent is None:
            send = dataclasses.replace(send, root_id=None)  # each message is its own root
        return protocol.EnvelopeFactory(name, send, self._content_type(task, options))

    def _content_type(self, task: TaskBase | None, options: Mapping[str, Any]) -> str:
        serializer = options.get("serializer") or (task.serializer if task else None)
        return serialization.content_type_for(serializer or self.conf.task_serializer)

    def _plain_factory(self, name: str, task: TaskBase | None) -> protocol.EnvelopeFactory | None:
        """The envelope factory for a call with no options from outside any task, cached
        per task; None when something makes each call different (a router that reads the
        arguments, a relative ``expires``, a parent task)."""
        if task is None or task.expires is not None or _current_request.get() is not None:
            return None
        conf = self.conf
        router = self.router
        key = (
            router,
            conf.version,
            task.queue,
            task.priority,
            task.ignore_result,
            task.time_limit,
            task.soft_time_limit,
            task.serializer,
        )
        cached = self._factories.get(name)
        if cached is not None and cached[0] == key:
            return cached[1]
        if not (router.cacheable or task.queue) or router.queues.fans_out:
            return None
        factory = self._many_factory(name, (), {}, {}, task, None)  # each call its own root
        self._factories[name] = (key, factory)
        return factory

    def _send_options(
        self,
        name: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        options: Mapping[str, Any],
        task: TaskBase | None,
        task_id: str,
    ) -> tuple[tuple[str, ...], protocol.SendOptions]:
        """The message's options, and every queue that gets a copy (several only when a
        topic exchange's bindings match more than one)."""
        route: dict[str, Any] = {}
        if not options.get("queue") and not (task and task.queue):
            route = self.router.route(name, args, kwargs, options, task)
        target = self.router.queues.destination(
            checks.given_queue(
                options.get("queue") or (task.queue if task else None) or route.get("queue")
            ),
            options.get("exchange") or getattr(task, "exchange", None) or route.get("exchange"),
            options.get("routing_key")
            or getattr(task, "routing_key", None)
            or route.get("routing_key"),
        )
        queue = target.queues[0]
        priority = checks.priority(
            options.get("priority"),
            route.get("priority"),
            task.priority if task else None,
            self.conf.task_default_priority,
        )
        parent = _current_request.get()
        ignore_result = options.get("ignore_result")
        if ignore_result is None:
            ignore_result = bool(
                task.ignore_result
                if task and task.ignore_result is not None
                else self.conf.task_ignore_result
            )
        hard = options.get("time_limit", task.time_limit if task else None)
        soft = options.get("soft_time_limit", task.soft_time_limit if task else None)
        expires = options.get("expires", task.expires if task else None)
        headers = options.get("headers") or {}
        if not isinstance(headers, Mapping):
            raise InvalidTaskOptions(f"headers must be a dict, got {type(headers).__name__}")
        send = protocol.SendOptions(
            queue=queue,
            exchange=target.exchange,
            routing_key=target.routing_key,
            priority=priority,
            eta=checks.eta(options.get("eta"), options.get("countdown")),
            expires=checks.expires(expires),
            retries=int(options.get("retries") or 0),
            timelimit=(checks.seconds("time_limit", hard), checks.seconds("soft_time_limit", soft)),
            root_id=options.get("root_id") or (parent.root_id if parent else None) or task_id,
            parent_id=options.get("parent_id") or (parent.id if parent else None),
            group=options.get("group_id"),
            group_index=options.get("group_index"),
            ignore_result=bool(ignore_result),
            shadow=options.get("shadow"),
            reply_to=options.get("reply_to"),
            headers=headers,
            callbacks=checks.signatures(options.get("link")),
            errbacks=checks.signatures(options.get("link_error")),
            chain=options.get("chain"),
            chord=options.get("chord"),
        )
        return target.queues, send

    @property
    def control(self) -> Control:
        """Remote control: ``app.control.revoke(id)``, ``.ping()``, ``.inspect()``."""
        from ..control import Control

        return Control(self)

    def AsyncResult(self, task_id: str, **kwargs: Any) -> AsyncResult:
        return AsyncResult(task_id, app=self, **kwargs)

    def signature(self, varies: Any, *args: Any, **kwargs: Any) -> Signature:
        """``app.signature('tasks.add', (2, 2))``: a signature bound to this app."""
        from ..canvas import signature

        kwargs["app"] = self
        return signature(varies, *args, **kwargs)


Celery = Celeriac


def shared_task(fun: Callable[..., Any] | None = None, **options: Any) -> Any:
    """A task for every app: registered on each app that exists now or is created later."""

    def register(inner: Callable[..., Any]) -> TaskBase:
        with _lock:
            _shared.append((inner, dict(options)))
            apps = list(_apps)
        task: TaskBase | None = None
        for app in apps:
            task = app._register(inner, options)
        if task is None:
            task = default_app()._register(inner, options)
        return task

    if fun is not None:
        return register(_callable(fun))
    return register


def _task_class(task_cls: type[TaskBase] | str) -> type[TaskBase]:
    """Celery's ``task_cls``: the base class of every task of the app, or its dotted path."""
    found = load_object(task_cls) if isinstance(task_cls, str) else task_cls
    if not (isinstance(found, type) and issubclass(found, TaskBase)):
        raise ImproperlyConfigured(f"task_cls {task_cls!r} is not a celeriac Task subclass")
    return found


def _callable(fun: Any) -> Callable[..., Any]:
    if not callable(fun):
        raise TypeError(
            f"@task takes the function to register, got {fun!r}; "
            f"give options as keywords, e.g. @app.task(name='proj.add')"
        )
    return fun  # type: ignore[no-any-return]


def load_app(reference: str) -> Celeriac:
    """Find the app named by ``-A``: ``module``, ``module:attr`` or ``module.attr``.

    With only a module, look for ``app`` or ``celery`` in it, then any Celeriac instance.
    """
    obj = load_object(reference)
    if isinstance(obj, Celeriac):
        return obj
    for attr in ("app", "celery"):
        candidate = getattr(obj, attr, None)
        if isinstance(candidate, Celeriac):
            return candidate
        if candidate is not None and hasattr(candidate, "__dict__"):
            nested = getattr(candidate, "app", None)
            if isinstance(nested, Celeriac):
                return nested
    found = (
        [v for v in vars(obj).values() if isinstance(v, Celeriac)]
        if hasattr(obj, "__dict__")
        else []
    )
    if len(found) == 1:
        return found[0]
    raise ImproperlyConfigured(
        f"{reference!r} names no celeriac app; point -A at module:attr where attr is a "
        f"Celeriac (or Celery) instance"
    )


def _warn_duplicate(name: str, existing: Any, new: Any, outcome: str) -> None:
    """Two callables under one task name: a mistake worth one line, as Celery 5.7 says it."""
    warnings.warn(
        DuplicateTaskNameWarning(
            f"task name {name!r} is already registered to {_qualname(existing)}; the new "
            f"callable {_qualname(new)} {outcome}. Give each task a unique name (name= on "
            f"the decorator) or rename one of the callables"
        ),
        stacklevel=4,
    )


def _qualname(obj: Any) -> str:
    target = obj if callable(obj) and not isinstance(obj, TaskBase) else type(obj)
    module = getattr(target, "__module__", "?")
    return f"{module}.{getattr(target, '__qualname__', repr(target))}"
