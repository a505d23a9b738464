"""Per-process flow state: the store for this app's broker, each task's resolved options,
lease renewal on the liveness heartbeat, and the
``flow_control`` part of ``inspect stats``."""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from .. import lifecycle
from ..errors import ImproperlyConfigured
from .limits import FlowSpec, spec_for
from .store_base import FlowStore
from .store_memory import MemoryFlowStore

if TYPE_CHECKING:
    from ..app import Celeriac
    from ..task import Task

logger = logging.getLogger(__name__)

_memory_stores: dict[str, MemoryFlowStore] = {}
_lock = threading.Lock()


def lease_ttl_s(app: Celeriac) -> float:
    """How long a slot or a running unique lock outlives its owner's last heartbeat."""
    return max(2.0, min(float(app.conf.worker_dead_after), 6.0))


class AppFlow:
    """One app's flow state in this process."""

    def __init__(self, app: Celeriac) -> None:
        self.app = app
        self._store: FlowStore | None = None
        self._store_for: tuple[int, int] | None = None
        self.specs: dict[str, tuple[str | None, FlowSpec | None]] = {}

    @property
    def store(self) -> FlowStore:
        broker = self.app.broker
        mark = (id(broker), os.getpid())
        if self._store is None or self._store_for != mark:
            self._store = _store_of(broker)
            self._store_for = mark
        return self._store

    def spec(self, task: Task, nodename: str | None = None) -> FlowSpec | None:
        """The task's flow options (None for none). Read again when its ``rate_limit``
        changed: the ``rate_limit`` command sets it in every process of the worker."""
        found = self.specs.get(task.name)
        if found is not None and found[0] == task.rate_limit:
            return found[1]
        try:
            spec: FlowSpec | None = spec_for(task, self.app.conf)
        except ImproperlyConfigured as exc:
            if found is None:
                raise
            # a value set at run time that this worker cannot read: keep the last good one
            logger.error("task %s keeps its previous limits: %s", task.name, exc)
            self.specs[task.name] = (task.rate_limit, found[1])
            return found[1]
        if spec is not None and not (spec.active or spec.unique_for_s):
            spec = None
        self.specs[task.name] = (task.rate_limit, spec)
        return spec


_flows: weakref.WeakKeyDictionary[Celeriac, AppFlow] = weakref.WeakKeyDictionary()


def flow_of(app: Celeriac) -> AppFlow:
    found = _flows.get(app)
    if found is None:
        with _lock:
            found = _flows.get(app)
            if found is None:
                found = _flows[app] = AppFlow(app)
    return found


def _store_of(broker: Any) -> FlowStore:
    kind = type(broker).__name__
    if kind == "RedisBroker":
        from .store_redis import RedisFlowStore

        return RedisFlowStore(broker.client)
    if kind == "SqliteBroker":
        from .store_sqlite import SqliteFlowStore

        return SqliteFlowStore(broker.path)
    with _lock:
        return _memory_stores.setdefault(
            str(getattr(broker, "url", "memory://")), MemoryFlowStore()
        )


def stats(app: Celeriac) -> dict[str, Any]:
    """The ``flow_control`` entry of ``inspect stats``: parked counts and each limit."""
    flow = flow_of(app)
    now = time.time()
    tasks: dict[str, Any] = {}
    total = 0
    for name, task in sorted(app.tasks.items()):
        try:
            spec = flow.spec(task)
        except ImproperlyConfigured as exc:
            tasks[name] = {"error": str(exc)}
            continue
        if spec is None:
            continue
        parked = flow.store.parked(name, now)
        total += parked
        tasks[name] = {
            "rate_limit": (f"{spec.rate_per_s:g}/s" if spec.rate_per_s else None),
            "rate_limit_scope": spec.rate_scope,
            "keyed": spec.rate_key is not None,
            "max_concurrency": spec.max_concurrency,
            "unique_for": spec.unique_for_s,
            "parked": parked,
        }
    return {
        "parked": total,
        "rate_limits_disabled": bool(app.conf.worker_disable_rate_limits),
        "tasks": tasks,
    }


# a lifecycle view: the liveness heartbeat renews the leases of the owners it beats for
def _renew_on_heartbeat(liveness: Any) -> None:
    app = liveness.app
    flow = _flows.get(app)
    if flow is None and not any(_declares_flow(task) for task in app.tasks.values()):
        return
    owners = list(liveness.owners())
    flow_of(app).store.renew(owners, lease_ttl_s(app), time.time())


def _declares_flow(task: Task) -> bool:
    return bool(getattr(task, "max_concurrency", None) or getattr(task, "unique_for", None))


lifecycle.worker_heartbeat.subscribe(_renew_on_heartbeat)
