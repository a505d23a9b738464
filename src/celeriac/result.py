"""Results as the client sees them: AsyncResult (from the backend), EagerResult (local) and
GroupResult (a group's results, in order).

A workflow's results link up as Celery's do: ``parent`` points at the result that ran before
(known to the client that sent the workflow), ``children`` at what a task sent (stored by the
worker in the result meta as Celery's result tuples: ``[[id, parent], None]`` for a task,
``[[gid, parent], [<tuples>]]`` for a group).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import states
from .backends.base import Meta, decode_exception
from .errors import TaskRevokedError
from .protocol import parse_time

if TYPE_CHECKING:
    from .app import Celeriac

ResultTuple = tuple[Any, Any]
# how many results GroupResult.get reads in one go (one MGET on Redis) after each wait
_PRIME_BATCH = 200


class ResultBase:
    """Base of every result class (Celery's name, for ``isinstance`` checks)."""

    parent: Any = None


class AsyncResult(ResultBase):
    """The state and return value of a task sent to a worker.

    ``get()`` waits on the backend's notification (Redis pub/sub), not by polling.
    """

    def __init__(
        self,
        id: str,
        backend: Any = None,
        task_name: str | None = None,
        app: Celeriac | None = None,
        parent: AnyResult | None = None,
    ) -> None:
        if not isinstance(id, str) or not id:
            raise ValueError(f"AsyncResult needs a task id string, got {id!r}")
        self.id = id
        self.app = _app_or_default(app)
        self._backend = backend
        self.task_name = task_name
        self.parent = parent
        self._cache: Meta | None = None

    @property
    def backend(self) -> Any:
        return self._backend if self._backend is not None else self.app.backend

    def __repr__(self) -> str:
        return f"<AsyncResult: {self.id}>"

    def __str__(self) -> str:
        return self.id

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AsyncResult):
            return other.id == self.id
        if isinstance(other, str):
            return other == self.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    def __del__(self) -> None:
        # a wait that timed out may have left a subscription to this result on Redis:
        # drop it with the last reference (never opens a backend that was not in use)
        if self.__dict__.get("_cache", False) is None:  # False: __init__ did not finish
            backend = self._backend if self._backend is not None else self.app._backend
            release = getattr(backend, "release", None)
            if release is not None:
                release(self.id)

    def _meta(self) -> Meta:
        if self._cache is not None:
            return self._cache
        meta = self.backend.get_meta(self.id) or {"status": states.PENDING, "result": None}
        if meta.get("status") in states.READY_STATES:
            self._cache = meta
        return meta

    @property
    def state(self) -> str:
        return str(self._meta().get("status", states.PENDING))

    status = state

    @property
    def result(self) -> Any:
        """The return value, or the exception for failed tasks (as Celery's ``.result``)."""
        return self._value(self._meta())

    info = result

    @property
    def traceback(self) -> str | None:
        value = self._meta().get("traceback")
        return value if isinstance(value, str) else None

    @property
    def date_done(self) -> datetime | None:
        return parse_time(self._meta().get("date_done"))

    @property
    def place(self) -> dict[str, Any] | None:
        """Where the task ran: host, worker, pool, pid, ppid, thread, greenlet, child index."""
        value = self._meta().get("place")
        return dict(value) if isinstance(value, dict) else None

    @property
    def children(self) -> list[AnyResult]:
        """The results of what this task sent (chain steps, callbacks, tasks it applied)."""
        value = self._meta().get("children")
        if not isinstance(value, list):
            return []
        return [result_from_tuple(child, self.app) for child in value]

    def as_tuple(self) -> ResultTuple:
        """Celery's serializable form: ``((id, parent_tuple), None)``."""
        return (self.id, self.parent.as_tuple() if self.parent else None), None

    def collect(self, intermediate: bool = False, **kwargs: Any) -> Iterator[tuple[AnyResult, Any]]:
        """Wait for this result and then every result under it, yielding ``(result, value)``.

        Children are read from each result's meta once it is ready, as Celery does.
        ``intermediate`` is accepted for Celery's signature; every node is waited for.
        """
        pending: deque[AnyResult] = deque([self])
        while pending:
            node = pending.popleft()
            value = node.get(**kwargs)
            yield node, value
            pending.extend(node.children)

    def _remember(self, meta: Meta) -> None:
        """Keep a meta read in bulk (GroupResult.get) when it is final."""
        if meta.get("status") in states.READY_STATES:
            self._cache = meta

    def ready(self) -> bool:
        return self.state in states.READY_STATES

    def successful(self) -> bool:
        return self.state == states.SUCCESS

    def failed(self) -> bool:
        return self.state == states.FAILURE

    def forget(self) -> None:
        self._cache = None
        self.backend.forget(self.id)

    def revoke(
        self,
        connection: Any = None,
        terminate: bool = False,
        signal: str = "SIGTERM",
        wait: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Revoke this task (``terminate=True`` also stops it if it runs in prefork)."""
        self.app.control.revoke(self.id, terminate=terminate, signal=signal)
        if wait:
            self.get(timeout=timeout, propagate=False)

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        **_ignored: Any,
    ) -> Any:
        """Wait until the task is ready and return its value (or raise its exception)."""
        meta = self._cache
        if meta is None:
            meta = self.backend.wait_for(self.id, timeout, interval)
            self._cache = meta
        value = self._value(meta)
        if propagate and meta.get("status") in states.PROPAGATE_STATES:
            if isinstance(value, BaseException):
                raise value
            raise TaskRevokedError(str(value))
        return value

    wait = get

    def _value(self, meta: Meta) -> Any:
        value = meta.get("result")
        if meta.get("status") in states.EXCEPTION_STATES and isinstance(value, dict):
            return decode_exception(value, self.app)
        return value


class EagerResult(AsyncResult):
    """The result of ``task.apply()``: already known, never touches a backend."""

    def __init__(self, id: str, meta: Meta, app: Celeriac | None = None) -> None:
        super().__init__(id, backend=_NoBackend(), app=app)
        self._cache = meta

    def _meta(self) -> Meta:
        assert self._cache is not None
        return self._cache

    def forget(self) -> None:
        return None


class _NoBackend:
    def get_meta(self, task_id: str) -> Meta | None:
        return None

    def get_many(self, task_ids: Sequence[str]) -> dict[str, Meta]:
        return {}


class GroupResult(ResultBase):
    """The results of a group, in the group's order, under the group's id.

    ``get()`` returns the values in order (raising the first failure unless
    ``propagate=False``); ``save()`` stores the group as Celery's
    ``celery-taskset-meta-<gid>`` so another process can ``GroupResult.restore(gid)`` it.
    """

    def __init__(
        self,
        id: str | None = None,
        results: Sequence[AnyResult] | None = None,
        parent: AnyResult | None = None,
        app: Celeriac | None = None,
    ) -> None:
        self.id = id
        self.results: list[AnyResult] = list(results or [])
        self.parent = parent
        self.app = _app_or_default(app)

    @property
    def backend(self) -> Any:
        return self.app.backend

    def __repr__(self) -> str:
        return f"<GroupResult: {self.id} [{', '.join(r.id or '?' for r in self.results)}]>"

    def __str__(self) -> str:
        return str(self.id)

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[AnyResult]:
        return iter(self.results)

    def __getitem__(self, index: int) -> AnyResult:
        return self.results[index]

    def __bool__(self) -> bool:
        return bool(self.id or self.results)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GroupResult):
            return other.id == self.id and other.results == self.results
        if isinstance(other, str):
            return other == self.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def children(self) -> list[AnyResult]:
        return self.results

    def as_tuple(self) -> ResultTuple:
        """``((gid, parent_tuple), [member tuples])``, as Celery stores groups."""
        parent = self.parent.as_tuple() if self.parent else None
        return (self.id, parent), [r.as_tuple() for r in self.results]

    # state
    def ready(self) -> bool:
        self._prime(self._leaves())
        return all(r.ready() for r in self.results)

    def successful(self) -> bool:
        self._prime(self._leaves())
        return all(r.successful() for r in self.results)

    def failed(self) -> bool:
        self._prime(self._leaves())
        return any(r.failed() for r in self.results)

    def waiting(self) -> bool:
        return not self.ready()

    def completed_count(self) -> int:
        """How many members finished successfully."""
        self._prime(self._leaves())
        return sum(1 for r in self.results if r.successful())

    # waiting
    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        **_ignored: Any,
    ) -> list[Any]:
        """Every member's value, in the group's order, once all are ready."""
        deadline = None if timeout is None else time.monotonic() + timeout
        leaves = self._leaves()
        self._prime(leaves)
        values = []
        for position, result in enumerate(self.results):
            if isinstance(result, AsyncResult) and result._cache is None:
                # it may have finished with the ones after it: read a batch, then wait
                self._prime(leaves[position : position + _PRIME_BATCH])
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            values.append(result.get(timeout=remaining, propagate=propagate, interval=interval))
        return values

    join = get
    join_native = get
    wait = get

    def _leaves(self) -> list[AsyncResult]:
        return [r for r in self.results if isinstance(r, AsyncResult)]

    def _prime(self, results: Sequence[AsyncResult]) -> None:
        unknown = [r for r in results if r._cache is None and not isinstance(r, EagerResult)]
        if not unknown:
            return
        found = self.backend.get_many([r.id for r in unknown])
        for result in unknown:
            meta = found.get(result.id)
            if meta is not None:
                result._remember(meta)

    # actions
    def forget(self) -> None:
        for result in self.results:
            result.forget()

    def revoke(self, terminate: bool = False, signal: str = "SIGTERM", **kwargs: Any) -> None:
        for result in self.results:
            result.revoke(terminate=terminate, signal=signal, **kwargs)

    def save(self, backend: Any = None) -> GroupResult:
        """Store this group (``celery-taskset-meta-<gid>``) for ``GroupResult.restore``."""
        if not self.id:
            raise ValueError("a GroupResult needs an id to be saved; give GroupResult(id, ...)")
        expires: Any = self.app.conf.result_expires
        if hasattr(expires, "total_seconds"):
            expires = expires.total_seconds()
        store = backend or self.backend
        store.save_group(self.id, {"result": self.as_tuple()}, float(expires) if expires else None)
        return self

    def delete(self, backend: Any = None) -> None:
        if self.id:
            (backend or self.backend).delete_group(self.id)

    @classmethod
    def restore(
        cls, id: str, backend: Any = None, app: Celeriac | None = None
    ) -> GroupResult | None:
        """The group saved under *id*, or None when none was saved (or it expired)."""
        app = _app_or_default(app)
        meta = (backend or app.backend).get_group(id)
        if not meta or "result" not in meta:
            return None
        restored = result_from_tuple(meta["result"], app)
        if isinstance(restored, GroupResult):
            return restored
        return GroupResult(id, [restored], app=app)


AnyResult = AsyncResult | GroupResult


def result_from_tuple(value: Any, app: Celeriac | None = None) -> AnyResult:
    """An AsyncResult or GroupResult from Celery's tuple form (as stored in ``children``)."""
    if isinstance(value, (AsyncResult, GroupResult)):
        return value
    try:
        head, nodes = value
    except (TypeError, ValueError):
        raise ValueError(f"not a result tuple: {value!r}") from None
    if isinstance(head, (list, tuple)):
        result_id, parent_tuple = head
    else:
        result_id, parent_tuple = head, None
    parent = result_from_tuple(parent_tuple, app) if parent_tuple else None
    if nodes is not None:
        members = [result_from_tuple(node, app) for node in nodes]
        return GroupResult(str(result_id), members, parent=parent, app=app)
    return AsyncResult(str(result_id), app=app, parent=parent)


def _app_or_default(app: Celeriac | None) -> Celeriac:
    if app is not None:
        return app
    from .app import default_app

    return default_app()


class ResultSet(GroupResult):
    """Results with no group id of their own: ``ResultSet([r1, r2]).get()`` (Celery's name)."""

    def __init__(
        self, results: Sequence[AnyResult], app: Celeriac | None = None, **_ignored: Any
    ) -> None:
        super().__init__(None, results, app=app)

    def add(self, result: AnyResult) -> None:
        if result not in self.results:
            self.results.append(result)

    def discard(self, result: AnyResult) -> None:
        if result in self.results:
            self.results.remove(result)

    remove = discard

    def update(self, results: Iterable[AnyResult]) -> None:
        for result in results:
            self.add(result)

    def clear(self) -> None:
        self.results.clear()


@contextmanager
def allow_join_result() -> Iterator[None]:
    """Celery's permission to call ``result.get()`` inside a task. celeriac does not forbid
    it, so this only keeps such code running; waiting on another task from a task still
    ties up a worker slot."""
    yield
