"""One task lifecycle, many views.

Each point in the life of a task or a worker is emitted once, from one place: the client's
send path (``app/base.py``) and the worker's execute/consumer/pool code. Celery's signals, the
per-task log lines (and later events and metrics) are *views*: they subscribe a hook to the
points they show. A point nobody subscribed to costs one truth test at its emission site::

    if lifecycle.task_started.hooks:
        lifecycle.task_started.emit(ctx, job, request)

A view subscribes with ``point.subscribe(hook)``; a view that only matters while someone is
listening (a signal with receivers) subscribes and unsubscribes as that changes. A hook that
raises is logged with its traceback and never breaks the task or the worker.

Points and their arguments (worker-side objects are from ``celeriac.worker.execute``):

=======================  ==================================================================
point                    emitted with
=======================  ==================================================================
task_publishing          OutgoingMessage (the client, before the message is handed over)
task_published           OutgoingMessage (after)
task_received            ctx, job (the slot that will run it, once accepted)
task_deferred            ctx, delivery, message (an ETA/countdown task parked broker-side)
task_unknown             ctx, delivery, message, exc (an unregistered task name)
task_rejected            ctx, delivery, exc (a message that is not a runnable task)
task_revoked             ctx, job, terminated, signum, expired (prefork terminate:
                         None, Terminated, True, signum, False)
task_started             ctx, job, request (in the task's slot, its request current)
task_succeeded           ctx, job, outcome (result stored, on_success called)
task_failed              ctx, job, outcome
task_retried             ctx, job, outcome
task_finished            ctx, job, outcome (after any of the three above)
task_internal_error      ctx, delivery, exc (the worker's own code failed on a message)
eager_*                  None, run, request|outcome: ``task.apply()`` (and
                         ``task_always_eager``) in this process; ``run`` has ``task``,
                         ``message`` (the request: ``id``, ``args``, ``kwargs``) and
                         ``request``. Separate from the worker's points, so events, metrics
                         and the worker's task book never count a task run in place
worker_* points          see the definitions below
=======================  ==================================================================
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from . import serialization

if TYPE_CHECKING:
    from .app import Celeriac

logger = logging.getLogger(__name__)

Hook = Callable[..., Any]


class Point:
    """One point of the lifecycle; ``hooks`` is replaced whole, so emitters read it unlocked."""

    __slots__ = ("hooks", "name")

    _lock = threading.RLock()  # reentrant: a signal change may arrive from a GC callback

    def __init__(self, name: str) -> None:
        self.name = name
        self.hooks: tuple[Hook, ...] = ()

    def __repr__(self) -> str:
        return f"<lifecycle point {self.name}: {len(self.hooks)} hook(s)>"

    def subscribe(self, hook: Hook) -> None:
        with self._lock:
            if hook not in self.hooks:
                self.hooks = (*self.hooks, hook)

    def unsubscribe(self, hook: Hook) -> None:
        with self._lock:
            self.hooks = tuple(h for h in self.hooks if h != hook)

    def keep(self, hook: Hook, on: bool) -> None:
        """Subscribe *hook* when *on*, else unsubscribe it."""
        if on:
            self.subscribe(hook)
        else:
            self.unsubscribe(hook)

    def emit(self, *args: Any) -> None:
        """Call every hook; one that raises is logged and the others still run."""
        for hook in self.hooks:
            try:
                hook(*args)
            except Exception:
                logger.exception(
                    "lifecycle view %s failed at %s; the task and the worker go on",
                    getattr(hook, "__qualname__", hook),
                    self.name,
                )


def subscribe_all(pairs: Iterable[tuple[Point, Hook]], on: bool = True) -> None:
    """Subscribe each hook to its point (a view's install), or with ``on=False`` unsubscribe
    each (its uninstall)."""
    for point, hook in pairs:
        point.keep(hook, on)


# the client
task_publishing = Point("task_publishing")
task_published = Point("task_published")

# one task in the worker
task_received = Point("task_received")
task_deferred = Point("task_deferred")  # ctx, delivery, message (ETA later: parked)
task_unknown = Point("task_unknown")
task_rejected = Point("task_rejected")
task_revoked = Point("task_revoked")
task_started = Point("task_started")
task_succeeded = Point("task_succeeded")
task_failed = Point("task_failed")
task_retried = Point("task_retried")
task_finished = Point("task_finished")
task_internal_error = Point("task_internal_error")

# a task run in place (task.apply(), task_always_eager): only the signals view listens
eager_started = Point("eager_started")  # None, run, request
eager_succeeded = Point("eager_succeeded")  # None, run, outcome
eager_failed = Point("eager_failed")  # None, run, outcome (not when the error propagates)
eager_retried = Point("eager_retried")  # None, run, outcome (not when the Retry propagates)
eager_finished = Point("eager_finished")  # None, run, outcome (always, as Celery's postrun)

# the worker
worker_initialised = Point("worker_initialised")  # worker (the Worker, before start)
worker_set_up = Point("worker_set_up")  # worker (before the banner)
worker_ready = Point("worker_ready")  # worker (consuming, remote control listening)
worker_process_started = Point("worker_process_started")  # hostname (child after fork; solo)
worker_process_stopping = Point("worker_process_stopping")  # hostname, pid, exitcode
worker_shutting_down = Point("worker_shutting_down")  # hostname, signal name, how, exitcode
worker_stopped = Point("worker_stopped")  # worker (the pool has stopped)
worker_heartbeat = Point("worker_heartbeat")  # the Liveness that beat

POINTS: tuple[Point, ...] = tuple(v for v in tuple(globals().values()) if isinstance(v, Point))


@dataclass(frozen=True)
class EagerRun:
    """A task run in place, as the ``eager_*`` points pass it: shaped like the worker's job
    where views read it (``task``, ``message.id/args/kwargs``, ``request``)."""

    task: Any
    request: Any

    @property
    def message(self) -> Any:
        return self.request


@dataclass(frozen=True)
class Terminated:
    """A task the prefork manager stopped (``revoke(terminate=True)``): what its slot table
    knows, for ``task_revoked`` emitted with no execution context (``ctx`` is None)."""

    app: Celeriac
    id: str
    name: str
    hostname: str | None


class OutgoingMessage:
    """A task message on its way to the broker, as the publish points see it.

    The envelope is decoded only when a view asks for it; a view may change ``headers``
    before the message is handed over, and ``encode`` then sends the changed message.
    """

    __slots__ = ("_envelope", "app", "name", "priority", "queue", "raw")

    def __init__(self, app: Celeriac, name: str, queue: str, raw: bytes, priority: int) -> None:
        self.app = app
        self.name = name
        self.queue = queue
        self.raw = raw
        self.priority = priority
        self._envelope: dict[str, Any] | None = None

    @property
    def envelope(self) -> dict[str, Any]:
        if self._envelope is None:
            self._envelope = orjson.loads(self.raw)
        return self._envelope

    @property
    def headers(self) -> dict[str, Any]:
        headers: dict[str, Any] = self.envelope["headers"]
        return headers

    @property
    def properties(self) -> dict[str, Any]:
        properties: dict[str, Any] = self.envelope["properties"]
        return properties

    @property
    def task_id(self) -> str:
        return str(self.headers.get("id"))

    @property
    def exchange(self) -> str:
        info = self.properties.get("delivery_info") or {}
        return str(info.get("exchange") or "")

    @property
    def routing_key(self) -> str:
        info = self.properties.get("delivery_info") or {}
        return str(info.get("routing_key") or self.queue)

    def body(self) -> Any:
        """The body as Celery's protocol 2 has it: ``(args, kwargs, embed)``."""
        envelope = self.envelope
        data = envelope["body"]
        if self.properties.get("body_encoding") == "base64":
            data = base64.b64decode(data)
        content_type = envelope.get("content-type") or serialization.JSON
        # our own message: its serializer was allowed when it was written
        args, kwargs, embed = serialization.loads(data, content_type, (content_type,))
        return (args, kwargs, embed)

    def encode(self) -> bytes:
        """The message to send: the raw bytes, or the envelope again if a view read it."""
        if self._envelope is None:
            return self.raw
        self.raw = orjson.dumps(self._envelope)
        return self.raw


def publishing(app: Celeriac, name: str, queue: str, raw: bytes, priority: int) -> OutgoingMessage:
    """Run the ``task_publishing`` hooks; send ``.encode()`` of what this returns."""
    message = OutgoingMessage(app, name, queue, raw, priority)
    if task_publishing.hooks:
        task_publishing.emit(message)
    return message


def published(message: OutgoingMessage) -> None:
    if task_published.hooks:
        task_published.emit(message)


def publishing_watched() -> bool:
    """Whether a view watches publishing (the bulk send path then sends one by one)."""
    return bool(task_publishing.hooks or task_published.hooks)
