"""Celery's signals, with Celery's names, senders and keyword arguments.

A receiver is any callable taking ``sender`` and ``**kwargs``::

    from celeriac.signals import task_prerun

    @task_prerun.connect
    def log_start(sender=None, task_id=None, task=None, **kwargs):
        ...

    @worker_process_init.connect(weak=False)
    def open_connections(**kwargs):
        ...

``connect(sender=...)`` filters by sender: the object itself, or for a task signal also the
task's name as a string. A receiver that raises is logged with its traceback and never
breaks the task or the worker; ``send`` returns ``(receiver, exception)`` for it.

A signal with no receiver costs one truth test: the worker asks ``if signal.receivers``
before it builds the arguments.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

Receiver = Callable[..., Any]

__all__ = [
    "Signal",
    "after_setup_logger",
    "after_setup_task_logger",
    "after_task_publish",
    "beat_embedded_init",
    "beat_init",
    "before_task_publish",
    "celeryd_after_setup",
    "celeryd_init",
    "eventlet_pool_apply",
    "eventlet_pool_postshutdown",
    "eventlet_pool_preshutdown",
    "eventlet_pool_started",
    "heartbeat_sent",
    "import_modules",
    "setup_logging",
    "task_failure",
    "task_internal_error",
    "task_postrun",
    "task_prerun",
    "task_received",
    "task_rejected",
    "task_retry",
    "task_revoked",
    "task_success",
    "task_unknown",
    "user_preload_options",
    "worker_before_create_process",
    "worker_init",
    "worker_process_init",
    "worker_process_shutdown",
    "worker_ready",
    "worker_shutdown",
    "worker_shutting_down",
]


def _sender_key(sender: Any) -> Any:
    """Strings compare by value, anything else by identity; ``None`` means any sender."""
    if sender is None or isinstance(sender, str):
        return sender
    return id(sender)


def _receiver_key(receiver: Receiver) -> Any:
    target = getattr(receiver, "__self__", None)
    if target is not None:  # a bound method: the same method of the same object
        return (id(target), id(getattr(receiver, "__func__", receiver)))
    return id(receiver)


class Signal:
    """One named point that receivers subscribe to."""

    def __init__(self, name: str, providing_args: frozenset[str] | None = None) -> None:
        self.name = name
        self.providing_args = providing_args or frozenset()
        # (lookup key, sender key, reference): a weak reference, or a callable returning the
        # receiver for a strong one; read without the lock (replaced whole on change)
        self._entries: tuple[tuple[Any, Any, Callable[[], Receiver | None]], ...] = ()
        # reentrant: a weak receiver collected while the lock is held calls back into it
        self._lock = threading.RLock()
        # told whether the signal has receivers whenever that may have changed: how the
        # signals view subscribes to the lifecycle only while someone listens
        self._watchers: list[Callable[[bool], None]] = []

    def __repr__(self) -> str:
        return f"<Signal: {self.name}>"

    @property
    def receivers(self) -> list[Receiver]:
        """The receivers still alive, in the order they connected."""
        alive = []
        for _key, _sender, ref in self._entries:
            receiver = ref()
            if receiver is not None:
                alive.append(receiver)
        return alive

    def __bool__(self) -> bool:
        return bool(self._entries)

    def connect(
        self,
        receiver: Receiver | None = None,
        *,
        sender: Any = None,
        weak: bool = True,
        dispatch_uid: str | None = None,
    ) -> Any:
        """Subscribe *receiver*; also usable as ``@signal.connect`` or ``@signal.connect(...)``."""
        if receiver is None:

            def decorate(fun: Receiver) -> Receiver:
                self.connect(fun, sender=sender, weak=weak, dispatch_uid=dispatch_uid)
                return fun

            return decorate
        if not callable(receiver):
            raise TypeError(
                f"{self.name}.connect() takes a callable receiver, not {type(receiver).__name__}; "
                "pass a function that accepts sender and **kwargs"
            )
        key = (dispatch_uid or _receiver_key(receiver), _sender_key(sender))
        ref = self._reference(receiver, weak)
        with self._lock:
            if any(entry[0] == key for entry in self._entries):
                return receiver
            self._entries = (*self._entries, (key, _sender_key(sender), ref))
        self._changed()
        return receiver

    def disconnect(
        self,
        receiver: Receiver | None = None,
        *,
        sender: Any = None,
        dispatch_uid: str | None = None,
    ) -> bool:
        """Unsubscribe; True when something was connected under that key."""
        if receiver is None and dispatch_uid is None:
            raise TypeError(f"{self.name}.disconnect() needs the receiver or its dispatch_uid")
        key = (dispatch_uid or _receiver_key(receiver), _sender_key(sender))  # type: ignore[arg-type]
        with self._lock:
            kept = tuple(entry for entry in self._entries if entry[0] != key)
            removed = len(kept) != len(self._entries)
            self._entries = kept
        self._changed()
        return removed

    def watch(self, watcher: Callable[[bool], None]) -> None:
        """Call *watcher* with whether this signal has receivers: now and after each change."""
        self._watchers.append(watcher)
        watcher(bool(self._entries))

    def _changed(self) -> None:
        listening = bool(self._entries)
        for watcher in self._watchers:
            watcher(listening)

    def has_listeners(self, sender: Any = None) -> bool:
        return bool(self._live(sender))

    def send(self, sender: Any = None, **named: Any) -> list[tuple[Receiver, Any]]:
        """Call every receiver for *sender*; a receiver that raises is logged, never raised."""
        if not self._entries:
            return []
        responses: list[tuple[Receiver, Any]] = []
        for receiver in self._live(sender):
            try:
                response = receiver(signal=self, sender=sender, **named)
            except Exception as exc:
                logger.exception(
                    "signal %s: receiver %s raised %s; the %s goes on",
                    self.name,
                    getattr(receiver, "__qualname__", receiver),
                    type(exc).__name__,
                    "task" if self.name.startswith("task_") else "worker",
                )
                response = exc
            responses.append((receiver, response))
        return responses

    send_robust = send

    def _live(self, sender: Any) -> list[Receiver]:
        sender_id = _sender_key(sender)
        sender_name = getattr(sender, "name", None)
        live: list[Receiver] = []
        dead = False
        for _key, wanted, ref in self._entries:
            if not (
                wanted is None
                or wanted == sender_id
                or (isinstance(wanted, str) and wanted == sender_name)
            ):
                continue
            receiver = ref()
            if receiver is None:
                dead = True
            else:
                live.append(receiver)
        if dead:
            self._drop_dead()
        return live

    def _drop_dead(self) -> None:
        with self._lock:
            self._entries = tuple(entry for entry in self._entries if entry[2]() is not None)
        self._changed()

    def _reference(self, receiver: Receiver, weak: bool) -> Callable[[], Receiver | None]:
        if not weak:
            return lambda: receiver
        if getattr(receiver, "__self__", None) is not None and hasattr(receiver, "__func__"):
            return weakref.WeakMethod(receiver, lambda _ref: self._drop_dead())
        try:
            return weakref.ref(receiver, lambda _ref: self._drop_dead())
        except TypeError:  # builtins and some callables cannot be weakly referenced
            return lambda: receiver


def _signal(name: str, *args: str) -> Signal:
    return Signal(name, frozenset(args))


# publishing (client side, in the process and thread that calls apply_async)
before_task_publish = _signal(
    "before_task_publish",
    "body",
    "exchange",
    "routing_key",
    "headers",
    "properties",
    "declare",
    "retry_policy",
)
after_task_publish = _signal("after_task_publish", "body", "exchange", "routing_key")

# one task in the worker (sender: the task object, except where noted)
task_received = _signal("task_received", "request")  # sender: the consumer
task_prerun = _signal("task_prerun", "task_id", "task", "args", "kwargs")
task_postrun = _signal("task_postrun", "task_id", "task", "args", "kwargs", "retval", "state")
task_success = _signal("task_success", "result")
task_retry = _signal("task_retry", "request", "reason", "einfo")
task_failure = _signal(
    "task_failure", "task_id", "exception", "args", "kwargs", "traceback", "einfo"
)
task_internal_error = _signal(
    "task_internal_error", "task_id", "args", "kwargs", "request", "exception", "traceback", "einfo"
)
task_revoked = _signal("task_revoked", "request", "terminated", "signum", "expired")
task_rejected = _signal("task_rejected", "message", "exc")  # sender: the consumer
task_unknown = _signal("task_unknown", "message", "exc", "name", "id")  # sender: the consumer

# the worker (sender: the hostname for celeryd_*, the worker or the consumer elsewhere)
celeryd_init = _signal("celeryd_init", "instance", "conf", "options")
celeryd_after_setup = _signal("celeryd_after_setup", "instance", "conf")
import_modules = _signal("import_modules")  # sender: the app
worker_init = _signal("worker_init")
worker_before_create_process = _signal("worker_before_create_process")
worker_process_init = _signal("worker_process_init")
worker_process_shutdown = _signal("worker_process_shutdown", "pid", "exitcode")
worker_ready = _signal("worker_ready")
worker_shutting_down = _signal("worker_shutting_down", "sig", "how", "exitcode")
worker_shutdown = _signal("worker_shutdown")
heartbeat_sent = _signal("heartbeat_sent")

# logging
setup_logging = _signal("setup_logging", "loglevel", "logfile", "format", "colorize")
after_setup_logger = _signal("after_setup_logger", "logger", "loglevel", "logfile", "format")
after_setup_task_logger = _signal(
    "after_setup_task_logger", "logger", "loglevel", "logfile", "format"
)

# beat and the eventlet pool
beat_init = _signal("beat_init")
beat_embedded_init = _signal("beat_embedded_init")
eventlet_pool_started = _signal("eventlet_pool_started")
eventlet_pool_preshutdown = _signal("eventlet_pool_preshutdown")
eventlet_pool_postshutdown = _signal("eventlet_pool_postshutdown")
eventlet_pool_apply = _signal("eventlet_pool_apply", "target", "args", "kwargs")
user_preload_options = _signal("user_preload_options", "app", "options")


def _install_view() -> None:
    # the signals view of the lifecycle: each signal's hook runs only while it has receivers
    from . import signal_view

    signal_view.install()


_install_view()
