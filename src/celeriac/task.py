"""Tasks: the decorated function, its options, the request context and retry."""

from __future__ import annotations

import contextvars
import inspect
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from .errors import MaxRetriesExceededError, Retry

if TYPE_CHECKING:
    from .app import Celeriac
    from .canvas import Signature, chunks, xmap, xstarmap
    from .pydantic_args import PydanticCall
    from .result import AsyncResult, EagerResult, GroupResult


class Request:
    """What the running task knows about its message (``self.request`` in a bound task)."""

    # Celery's Context has these too; a worker never sets them (protocol 1's ``taskset`` is
    # read into ``group``, its ``utc`` into the times)
    taskset: str | None = None
    utc: bool | None = None
    logfile: str | None = None
    loglevel: int | None = None

    def __init__(self, **fields: Any) -> None:
        self.id: str | None = None
        self.task: str | None = None
        self.args: list[Any] = []
        self.kwargs: dict[str, Any] = {}
        self.retries = 0
        self.is_eager = False
        self.eta: str | None = None
        self.expires: str | None = None
        self.headers: dict[str, Any] | None = None  # the sender's own headers, as Celery's
        self.delivery_info: dict[str, Any] = {}
        self.properties: dict[str, Any] = {}
        self.reply_to: str | None = None
        self.correlation_id: str | None = None
        self.root_id: str | None = None
        self.parent_id: str | None = None
        self.group: str | None = None
        self.group_index: int | None = None
        self.origin: str | None = None
        self.hostname: str | None = None
        self.callbacks: list[Any] | None = None
        self.errbacks: list[Any] | None = None
        self.chain: list[Any] | None = None
        self.chord: Any = None
        self.timelimit: tuple[float | None, float | None] = (None, None)
        self.time_limit: float | None = None
        self.soft_time_limit: float | None = None
        self.argsrepr: str | None = None
        self.kwargsrepr: str | None = None
        self.shadow: str | None = None
        self.content_type: str | None = None
        self.content_encoding: str | None = None
        self.replaced_task_nesting = 0  # how many Task.replace calls led to this task
        self.stamped_headers: list[str] = []
        self.stamps: dict[str, Any] = {}
        self.ignore_result = False
        self.called_directly = True
        self.place: dict[str, Any] = {}
        self.children: list[AsyncResult | GroupResult] = []  # what the task sent (Celery's trail)
        self.__dict__.update(fields)  # plain attributes: no descriptor to go through

    @classmethod
    def of(cls, **fields: Any) -> Request:
        """A worker's request: every field given, so the defaults need not be set first."""
        request = cls.__new__(cls)
        request.is_eager = False
        request.children = []
        request.__dict__.update(fields)
        return request

    def __repr__(self) -> str:
        return f"<Request {self.task}[{self.id}]>"

    def get(self, key: str, default: Any = None) -> Any:
        """A field, or *default* (Celery's ``request.get('custom_header')``)."""
        return getattr(self, key, default)


_current_request: contextvars.ContextVar[Request | None] = contextvars.ContextVar(
    "celeriac_request", default=None
)
_DIRECT = Request()


def push_request(request: Request) -> contextvars.Token[Request | None]:
    return _current_request.set(request)


def pop_request(token: contextvars.Token[Request | None]) -> None:
    _current_request.reset(token)


def add_to_parent_trail(result: AsyncResult | GroupResult) -> None:
    """Remember a result sent from inside a running task: the worker stores it in that
    task's ``children`` (Celery's ``add_to_parent``)."""
    request = _current_request.get()
    if request is not None and not request.called_directly and not request.is_eager:
        request.children.append(result)


class Task:
    """A task: a function with a name and options, sent by name to workers.

    Subclass it and pass ``base=`` to ``@app.task`` to add hooks such as ``on_failure``.
    """

    name: str = ""
    bind = False
    queue: str | None = None
    ignore_result: bool | None = None
    serializer: str | None = None
    max_retries: int | None = 3
    default_retry_delay: float = 180
    autoretry_for: tuple[type[BaseException], ...] = ()
    dont_autoretry_for: tuple[type[BaseException], ...] = ()
    retry_kwargs: Mapping[str, Any] = {}
    retry_backoff: bool | float = False
    retry_backoff_max: float = 600
    retry_jitter = True
    acks_late: bool | None = None
    acks_on_failure_or_timeout: bool | None = None
    reject_on_worker_lost: bool | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    track_started: bool | None = None
    priority: int | None = None
    expires: float | datetime | None = None
    rate_limit: str | None = None
    # flow control (flow/): Celery-style options, checked when the task is registered
    rate_limit_scope: str | None = None  # "worker" (Celery's) or "global" (the whole cluster)
    rate_limit_key: Callable[..., Any] | str | None = None  # one bucket per key
    max_concurrency: int | None = None  # at most N runs at once across the cluster
    unique_for: float | None = None  # seconds: a second send while queued/running is a no-op
    unique_key: Callable[..., Any] | str | None = None
    typing = True
    store_errors_even_if_ignored = False

    _app: Celeriac | None = None
    _pydantic: PydanticCall | None = None  # @app.task(pydantic=True)
    _run_is_method = False  # a class-based task: ``run`` is a method, ``self`` comes with it
    _signature: inspect.Signature | None = None
    _positional: tuple[int, float] | None = None
    is_async = False

    def __init__(
        self,
        app: Celeriac | None = None,
        fun: Callable[..., Any] | None = None,
        name: str | None = None,
        **options: Any,
    ) -> None:
        """``base(app, fun, name)`` for a decorated function; ``MyTask()`` (no arguments)
        for a class-based task whose ``run`` method is the body, registered later with
        ``app.register_task(MyTask())``."""
        if app is not None:
            self._app = app
        if fun is not None and options.pop("pydantic", False):
            from .pydantic_args import wrap

            fun = self._pydantic = wrap(fun, name or fun.__name__, options, app)
        if fun is not None:
            self.run = fun
            self.__wrapped__ = fun
            self.__doc__ = fun.__doc__
            self.__module__ = fun.__module__
        if name:
            self.name = name
        for key, value in options.items():  # Celery keeps unknown options as attributes too
            setattr(self, key, value)
        self._inspect_run()

    def _inspect_run(self) -> None:
        """Read the body's signature (for ``typing``) and whether it is ``async def``."""
        body = self.__dict__.get("run")
        if body is None:
            body = getattr(self, "run", None)
            if body is None:
                raise TypeError(
                    f"task class {type(self).__name__} has no run method; define "
                    f"run(self, ...) or decorate a function with @app.task"
                )
            self._run_is_method = True
        self.is_async = inspect.iscoroutinefunction(body)
        self._signature = _signature_or_none(body)
        self._positional = _positional_range(self._signature)

    @property
    def app(self) -> Celeriac:
        """The app this task sends with: the one it was registered on, else the current app
        (a class-based task made before any ``register_task``)."""
        app = self._app
        if app is None:
            from .app import default_app

            app = self._app = default_app()
        return app

    @app.setter
    def app(self, value: Celeriac) -> None:
        self._app = value

    def bind_to(self, app: Celeriac) -> None:
        """Attach a class-based task to *app* (``register_task``); names it after its class
        and module when it has no ``name``."""
        if self._app is None:
            self._app = app
        if not self.name:
            cls = type(self)
            self.name = app.gen_task_name(cls.__name__, cls.__module__)
        if self._signature is None and "run" not in self.__dict__:
            self._inspect_run()  # a subclass __init__ that did not call Task.__init__

    def __repr__(self) -> str:
        return f"<@task: {self.name} of {self.app.main or '__main__'}>"

    @property
    def flow_options(self) -> bool:
        """Whether a concurrency cap or a unique lock applies (rate_limit is read apart)."""
        return bool(self.max_concurrency or self.unique_for)

    # running locally
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.bind and not self._run_is_method:
            return self.run(self, *args, **kwargs)
        return self.run(*args, **kwargs)

    @property
    def request(self) -> Request:
        current = _current_request.get()
        return current if current is not None else _DIRECT

    def check_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Raise TypeError now if the call would not fit the function (Celery's ``typing``)."""
        if self._signature is None or not self.typing:
            return
        with_self = self.bind and not self._run_is_method
        count = len(args) + 1 if with_self else len(args)
        if not kwargs and self._positional is not None:
            low, high = self._positional
            if low <= count <= high:  # the common delay(x, y): no need to bind
                return
        bound_args = (None, *args) if with_self else tuple(args)
        self._signature.bind(*bound_args, **kwargs)

    # sending
    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def delay_on_commit(self, *args: Any, **kwargs: Any) -> None:
        """``delay`` once the current Django transaction commits (at once outside one),
        and never if it rolls back: the worker cannot read rows that are not committed yet.
        Returns None, since no message exists until then."""
        _on_commit(lambda: self.delay(*args, **kwargs))

    def apply_async_on_commit(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        """``apply_async`` once the current Django transaction commits; see delay_on_commit."""
        _on_commit(lambda: self.apply_async(args, kwargs, **options))

    def delay_many(self, calls: Iterable[Sequence[Any]], **kwargs: Any) -> list[AsyncResult]:
        """Send one message per item of *calls*, each item the positional args of one call
        (``add.delay_many([(1, 2), (3, 4)])``), in pipelined batches: the bulk path, many
        times faster than a loop of ``delay``. *kwargs* go to every call. Returns the
        AsyncResults in order."""
        return self.apply_many(calls, kwargs)

    def apply_many(
        self,
        calls: Iterable[Sequence[Any]],
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> list[AsyncResult]:
        """``delay_many`` with ``apply_async``'s options (the same for every message)."""
        if self.app.conf.task_always_eager:
            return [self.apply(args, kwargs) for args in calls]
        return self.app.send_many(self.name, calls, kwargs, task=self, **options)

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult:
        args = tuple(args or ())
        kwargs = dict(kwargs or {})
        if self._pydantic is not None and options.get("serializer") != "pickle":
            args, kwargs = self._pydantic.dump_arguments(args, kwargs, with_self=self.bind)
        if self.app.conf.task_always_eager:  # Celery's: every option reaches apply()
            return self.apply(args, kwargs, **options)
        add_to_parent = options.pop("add_to_parent", True)
        result = self.app.send_task(self.name, args, kwargs, task=self, **options)
        if add_to_parent:
            add_to_parent_trail(result)
        return result

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> EagerResult:
        """Run the task here and now, as a worker would, and return an EagerResult."""
        from .worker.eager import run_eagerly

        return run_eagerly(self, tuple(args or ()), dict(kwargs or {}), **options)

    def AsyncResult(self, task_id: str) -> AsyncResult:
        return self.app.AsyncResult(task_id, task_name=self.name)

    # signatures (canvas.py)
    def signature(
        self, args: Sequence[Any] | None = None, *starargs: Any, **starkwargs: Any
    ) -> Signature:
        """``add.signature((2, 2), countdown=10)``: a signature with options."""
        from .canvas import signature

        starkwargs.setdefault("app", self.app)
        return signature(self, args, *starargs, **starkwargs)

    subtask = signature

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A partial signature: a parent's result (or delay's args) go in front of *args*."""
        return self.signature(args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: it keeps exactly these arguments."""
        return self.signature(args, kwargs, immutable=True)

    def map(self, it: Iterable[Any]) -> xmap:
        """One message running this task on each item (``celery.map``)."""
        from .canvas import xmap

        return xmap(self.s(), it, app=self.app)

    def starmap(self, it: Iterable[Any]) -> xstarmap:
        """One message running this task on each item's unpacked args (``celery.starmap``)."""
        from .canvas import xstarmap

        return xstarmap(self.s(), it, app=self.app)

    def chunks(self, it: Iterable[Any], n: int) -> chunks:
        """A group of starmap messages, *n* items each."""
        from .canvas import chunks

        return chunks(self.s(), it, n, app=self.app)

    # replacing (canvas_replace.py)
    def replace(self, sig: Signature) -> Any:
        """End this task and send *sig* in its place: *sig*'s final result is stored under
        this task's id, and this task's callbacks, errbacks, chain and chord go with it.
        Raises Ignore in a worker (``return self.replace(...)`` reads best); in an eager
        call, runs *sig* here and returns its value."""
        from .canvas_replace import replace_task

        return replace_task(self, sig)

    def on_replace(self, sig: Signature) -> Any:
        """Called by ``replace`` with the ready replacement (Celery 5.3's hook): sends it.
        An override must return ``super().on_replace(sig)``."""
        from .canvas_replace import send_replacement

        return send_replacement(self, sig)

    def add_to_chord(self, sig: Signature, lazy: bool = False) -> Any:
        """Add *sig* to the chord this task is a header part of (the body waits for it too).
        Sent now, unless *lazy*: then the frozen signature is returned for you to send."""
        from .canvas_replace import add_to_chord

        return add_to_chord(self, sig, lazy)

    # retry
    def retry(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: datetime | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Retry:
        """Ask for another run of this task; raises Retry (or MaxRetriesExceededError)."""
        request = self.request
        limit = self.max_retries if max_retries is None else max_retries
        if limit is not None and request.retries >= limit:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(
                f"can't retry {self.name}[{request.id}]: already retried {request.retries} "
                f"time(s) (max_retries={limit})"
            )
        if eta is None:
            countdown = self.default_retry_delay if countdown is None else countdown
            eta = datetime.now(timezone.utc) + timedelta(seconds=countdown)
        when = max(0.0, (eta - datetime.now(timezone.utc)).total_seconds())
        retry = Retry(exc=exc, when=round(when, 3))
        new_args, new_kwargs = _retry_arguments(self._call_signature(), request, args, kwargs)
        retry.args_override = new_args  # type: ignore[attr-defined]
        retry.kwargs_override = new_kwargs  # type: ignore[attr-defined]
        retry.eta = eta  # type: ignore[attr-defined]
        retry.options = options  # type: ignore[attr-defined]
        if request.called_directly:  # called as a plain function: nothing to send again
            if exc is not None:
                raise exc
            raise retry
        if throw:
            raise retry
        return retry

    def _call_signature(self) -> inspect.Signature | None:
        """The body's signature as a caller sees it (without a bound task's ``self``)."""
        signature = self._signature
        if signature is None or not self.bind or self._run_is_method:
            return signature
        return signature.replace(parameters=list(signature.parameters.values())[1:])

    def backoff_delay(self, retries: int) -> float:
        """Countdown for autoretry: exponential when retry_backoff is set, with full jitter."""
        if not self.retry_backoff:
            countdown: float = self.retry_kwargs.get("countdown", self.default_retry_delay)
            return float(countdown)
        factor = 1.0 if self.retry_backoff is True else float(self.retry_backoff)
        delay = min(float(self.retry_backoff_max), factor * (2.0**retries))
        if self.retry_jitter:
            delay = random.uniform(0, delay)
        return delay

    # hooks, as Celery calls them
    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        pass

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        pass

    def on_retry(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        pass

    def after_return(
        self, status: str, retval: Any, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        pass


def _retry_arguments(
    signature: inspect.Signature | None,
    request: Request,
    args: Sequence[Any] | None,
    kwargs: Mapping[str, Any] | None,
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments of the retry: given ones replace the request's. When only one kind is
    given, the request's other kind is kept where it does not clash (Celery's rule): new args
    drop the old keywords they now fill; new kwargs take over the old positional values of
    the same names."""
    old_args, old_kwargs = tuple(request.args or ()), dict(request.kwargs or {})
    if args is not None and kwargs is not None:
        return tuple(args), dict(kwargs)
    if args is None and kwargs is None:
        return old_args, old_kwargs
    params = list(signature.parameters.values()) if signature is not None else None
    if args is not None:
        kept = dict(old_kwargs)
        if params is not None:
            named = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            for param in named[: len(args)]:
                if param.kind is param.POSITIONAL_OR_KEYWORD:
                    kept.pop(param.name, None)
        return tuple(args), kept
    assert kwargs is not None
    if signature is None or not old_args:
        return old_args, dict(kwargs)
    try:
        bound = signature.bind_partial(*old_args)
    except TypeError:  # the call itself does not fit: let the run say so
        return old_args, dict(kwargs)
    rest = dict(kwargs)
    for name in list(rest):
        found = signature.parameters.get(name)
        positional = found is not None and found.kind is found.POSITIONAL_OR_KEYWORD
        if positional and name in bound.arguments:
            bound.arguments[name] = rest.pop(name)
    return tuple(bound.args), {**bound.kwargs, **rest}


def _on_commit(send: Callable[[], object]) -> None:
    try:
        from django.db import transaction
    except ImportError:
        from .errors import ImproperlyConfigured

        raise ImproperlyConfigured(
            "delay_on_commit/apply_async_on_commit wait for a Django transaction, and Django "
            "is not installed; pip install django, or call delay()/apply_async()"
        ) from None
    transaction.on_commit(send)


def _positional_range(signature: inspect.Signature | None) -> tuple[int, float] | None:
    """How many positional args a call with no keywords may pass, when that alone decides
    whether the call fits (no required keyword-only parameter)."""
    if signature is None:
        return None
    low, high = 0, 0.0
    for param in signature.parameters.values():
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            high += 1
            if param.default is param.empty:
                low += 1
        elif param.kind is param.VAR_POSITIONAL:
            high = float("inf")
        elif param.kind is param.KEYWORD_ONLY and param.default is param.empty:
            return None
    return low, high


def _signature_or_none(fun: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fun)
    except (TypeError, ValueError):
        return None
