"""An in-process result backend (``memory://``), shared by every app naming the same URL."""

from __future__ import annotations

import threading
import time

from .. import states
from ..config import Settings
from ..errors import TimeoutError
from .base import Meta

_STORES: dict[str, tuple[threading.Condition, dict[str, tuple[Meta, float | None]]]] = {}
_LOCK = threading.Lock()


class MemoryBackend:
    def __init__(self, url: str, settings: Settings | None = None) -> None:
        self.url = url
        with _LOCK:
            self._cond, self._data = _STORES.setdefault(url, (threading.Condition(), {}))

    def store(self, task_id: str, meta: Meta, expires_s: float | None) -> None:
        expires_at = time.monotonic() + expires_s if expires_s else None
        with self._cond:
            self._data[task_id] = (dict(meta), expires_at)
            self._cond.notify_all()

    def get_meta(self, task_id: str) -> Meta | None:
        with self._cond:
            entry = self._data.get(task_id)
            if entry is None:
                return None
            meta, expires_at = entry
            if expires_at is not None and expires_at < time.monotonic():
                del self._data[task_id]
                return None
            return dict(meta)

    def wait_for(self, task_id: str, timeout_s: float | None, interval_s: float = 0.5) -> Meta:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while True:
                meta = self.get_meta(task_id)
                if meta is not None and meta.get("status") in states.READY_STATES:
                    return meta
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"result of {task_id} not ready in time; is a worker consuming its queue?"
                    )
                self._cond.wait(remaining)

    def forget(self, task_id: str) -> None:
        with self._cond:
            self._data.pop(task_id, None)

    def close(self) -> None:
        return None
