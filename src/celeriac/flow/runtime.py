"""Per-process flow state: the store for this app's broker, each task's resolved options,
the limits changed at run time (kept broker-side, so prefork children see what the
manager's ``rate_limit`` command set), lease renewal on the liveness heartbeat, and the
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
from .limits import FlowSpec, parse_rate, spec_for
from .store_base import FlowStore
from .store_memory import MemoryFlowStore

if TYPE_CHECKING:
    from ..app import Celeriac
    from ..task import Task

logger = logging.getLogger(__name__)

OVERRIDE_REFRESH_S = 1.0  # how soon a rate_limit command reaches every process of a worker
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
        self.specs: dict[str, FlowSpec | None] = {}
        self.overrides: dict[str, str] = {}
        self.overrides_node: str | None = None
        self._next_refresh = 0.0

    @property
    def store(self) -> FlowStore:
        broker = self.app.broker
        mark = (id(broker), os.getpid())
        if self._store is None or self._store_for != mark:
            self._store = _store_of(broker)
            self._store_for = mark
        return self._store

    def spec(self, task: Task, nodename: str | None) -> FlowSpec | None:
        """The task's flow options (None for none), with run-time rate limits applied."""
        if nodename is not None:
            self.refresh(nodename)
        try:
            return self.specs[task.name]
        except KeyError:
            pass
        spec: FlowSpec | None = spec_for(task, self.app.conf)
        override = self.overrides.get(task.name)
        if override is not None and spec is not None:
            spec = _with_rate(spec, parse_rate(override or None, task.name))
        if spec is not None and not (spec.active or spec.unique_for_s):
            spec = None
        self.specs[task.name] = spec
        return spec

    def refresh(self, nodename: str) -> None:
        now = time.monotonic()
        if now < self._next_refresh and nodename == self.overrides_node:
            return
        self._next_refresh = now + OVERRIDE_REFRESH_S
        self.overrides_node = nodename
        try:
            found = self.store.overrides(nodename)
        except Exception as exc:  # the broker may be away; the consumer reports that
            logger.debug("could not read run-time rate limits: %s", exc)
            return
        if found != self.overrides:
            self.overrides = found
            self.specs.clear()


def _with_rate(spec: FlowSpec, per_s: float | None) -> FlowSpec:
    from dataclasses import replace

    return replace(spec, rate_per_s=per_s)


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


# the rate_limit remote-control command
def set_rate_limit(app: Celeriac, nodename: str, task_name: str, value: Any) -> dict[str, str]:
    """Celery's ``rate_limit`` command for worker *nodename*: a reply dict (``ok`` or
    ``error``). A bad value or an unknown task changes nothing."""
    try:
        per_s = parse_rate(value or None, task_name)
    except ImproperlyConfigured as exc:
        return {"error": f"Invalid rate limit string: {exc}"}
    task = app.tasks.get(task_name)
    if task is None:
        return {"error": "unknown task"}
    text = "" if not per_s else str(value)
    flow = flow_of(app)
    flow.store.set_override(nodename, task_name, text)
    task.rate_limit = text or None
    flow.specs.pop(task_name, None)
    flow.overrides[task_name] = text
    if not per_s:
        logger.info("rate limits disabled for tasks of type %s", task_name)
        return {"ok": "rate limit disabled successfully"}
    logger.info("new rate limit for tasks of type %s: %s", task_name, value)
    return {"ok": "new rate limit set successfully"}


def stats(app: Celeriac, nodename: str) -> dict[str, Any]:
    """The ``flow_control`` entry of ``inspect stats``: parked counts and each limit."""
    flow = flow_of(app)
    now = time.time()
    tasks: dict[str, Any] = {}
    total = 0
    for name, task in sorted(app.tasks.items()):
        try:
            spec = flow.spec(task, nodename)
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


# lifecycle views: renew leases with the heartbeat; a (re)started worker starts from the
# limits in its code, as Celery's does
def _renew_on_heartbeat(liveness: Any) -> None:
    app = liveness.app
    flow = _flows.get(app)
    if flow is None and not any(_declares_flow(task) for task in app.tasks.values()):
        return
    owners = list(liveness.owners())
    flow_of(app).store.renew(owners, lease_ttl_s(app), time.time())


def _declares_flow(task: Task) -> bool:
    return bool(getattr(task, "max_concurrency", None) or getattr(task, "unique_for", None))


def _forget_overrides(worker: Any) -> None:
    app = getattr(worker, "app", None)
    nodename = getattr(getattr(worker, "runtime", None), "nodename", None)
    if app is None or not nodename:
        return
    try:
        flow_of(app).store.clear_overrides(str(nodename))
    except Exception as exc:
        logger.warning("could not clear run-time rate limits of %s: %s", nodename, exc)


lifecycle.worker_heartbeat.subscribe(_renew_on_heartbeat)
lifecycle.worker_ready.subscribe(_forget_overrides)
