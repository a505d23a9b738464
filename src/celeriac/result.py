"""Results as the client sees them: AsyncResult (from the backend) and EagerResult (local)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import states
from .backends.base import Meta, decode_exception
from .errors import TaskRevokedError
from .protocol import parse_time

if TYPE_CHECKING:
    from .app import Celeriac


class AsyncResult:
    """The state and return value of a task sent to a worker.

    ``get()`` waits on the backend's notification (Redis pub/sub), not by polling.
    """

    def __init__(
        self,
        id: str,
        backend: Any = None,
        task_name: str | None = None,
        app: Celeriac | None = None,
    ) -> None:
        if not isinstance(id, str) or not id:
            raise ValueError(f"AsyncResult needs a task id string, got {id!r}")
        if app is None:
            from .app import default_app

            app = default_app()
        self.id = id
        self.app = app
        self._backend = backend
        self.task_name = task_name
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
    def children(self) -> list[Any]:
        value = self._meta().get("children")
        return list(value) if isinstance(value, list) else []

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

    @staticmethod
    def _value(meta: Meta) -> Any:
        value = meta.get("result")
        if meta.get("status") in states.EXCEPTION_STATES and isinstance(value, dict):
            return decode_exception(value)
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
