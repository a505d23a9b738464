"""The Redis result backend: ``celery-task-meta-<id>`` keys and their pub/sub channel."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
import redis.exceptions

from .. import states
from ..config import Settings
from ..errors import BackendError, SerializationError, TimeoutError
from ..serialization import dumps_json, loads_json
from ..urls import safe_url
from .base import Meta

logger = logging.getLogger(__name__)

KEY_PREFIX = "celery-task-meta-"
# builtins.ConnectionError, not OSError: our own TimeoutError is an OSError too
CONNECTION_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
)


def meta_key(task_id: str) -> str:
    return KEY_PREFIX + task_id


class RedisBackend:
    def __init__(self, url: str, settings: Settings, client_name: str = "celeriac") -> None:
        self.url = url
        try:
            self._client = redis.Redis.from_url(
                url,
                client_name=f"{client_name}:results",
                socket_connect_timeout=float(settings.broker_connection_timeout or 4.0),
                socket_keepalive=True,
                health_check_interval=30,
            )
        except ValueError as exc:
            raise BackendError(
                f"invalid Redis result backend URL {safe_url(url)!r}: {exc}"
            ) from exc
        self._local = threading.local()

    @property
    def client(self) -> redis.Redis:
        return self._client

    def store(self, task_id: str, meta: Meta, expires_s: float | None) -> None:
        payload = dumps_json(meta)
        key = meta_key(task_id)
        try:
            pipe = self._client.pipeline(transaction=True)
            if expires_s:
                pipe.set(key, payload, px=max(1, int(expires_s * 1000)))
            else:
                pipe.set(key, payload)
            pipe.publish(key, payload)
            pipe.execute()
        except CONNECTION_ERRORS as exc:
            raise BackendError(
                f"cannot store the result of {task_id} at {safe_url(self.url)}: {exc}"
            ) from exc

    def get_meta(self, task_id: str) -> Meta | None:
        try:
            data = self._client.get(meta_key(task_id))
        except CONNECTION_ERRORS as exc:
            raise BackendError(f"cannot read results at {safe_url(self.url)}: {exc}") from exc
        return _decode(data) if data is not None else None

    def forget(self, task_id: str) -> None:
        self._client.delete(meta_key(task_id))

    def wait_for(self, task_id: str, timeout_s: float | None, interval_s: float = 0.5) -> Meta:
        """Wait for a ready state: subscribe, then read the key (closing the race), then
        sleep on the channel. The key is read again every few seconds and after a reconnect,
        so a lost notification can delay the answer but never hang it."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        recheck_s = max(1.0, interval_s)
        while True:
            try:
                return self._wait_subscribed(task_id, deadline, recheck_s)
            except CONNECTION_ERRORS as exc:
                logger.warning("result backend %s lost (%s); reconnecting", safe_url(self.url), exc)
                self._reset_pubsub()
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"result of {task_id} not ready: the backend at {safe_url(self.url)} "
                        f"is unreachable ({exc})"
                    ) from exc
                time.sleep(min(0.5, max(0.0, (deadline or 0) - time.monotonic()) or 0.5))

    def _wait_subscribed(self, task_id: str, deadline: float | None, recheck_s: float) -> Meta:
        key = meta_key(task_id)
        pubsub = self._pubsub()
        pubsub.subscribe(key)
        try:
            self._await_subscribed(pubsub, key, deadline)
            while True:
                data = self._client.get(key)
                if data is not None:
                    meta = _decode(data)
                    if meta.get("status") in states.READY_STATES:
                        return meta
                next_check = time.monotonic() + recheck_s
                while time.monotonic() < next_check:
                    remaining = _remaining(deadline, task_id)
                    message = pubsub.get_message(timeout=min(remaining, recheck_s))
                    if message and message.get("type") == "message":
                        meta = _decode(message["data"])
                        if meta.get("status") in states.READY_STATES:
                            return meta
        finally:
            try:
                pubsub.unsubscribe(key)
            except CONNECTION_ERRORS:
                self._reset_pubsub()

    def _await_subscribed(self, pubsub: Any, key: str, deadline: float | None) -> None:
        while True:
            message = pubsub.get_message(timeout=min(_remaining(deadline, key), 1.0))
            if message and message.get("type") == "subscribe":
                channel = message.get("channel")
                if channel in (key, key.encode()):
                    return

    def _pubsub(self) -> Any:
        pubsub = getattr(self._local, "pubsub", None)
        if pubsub is None:
            pubsub = self._client.pubsub(ignore_subscribe_messages=False)
            self._local.pubsub = pubsub
        return pubsub

    def _reset_pubsub(self) -> None:
        pubsub = getattr(self._local, "pubsub", None)
        self._local.pubsub = None
        if pubsub is not None:
            try:
                pubsub.close()
            except CONNECTION_ERRORS:
                logger.debug("error closing pubsub", exc_info=True)

    def close(self) -> None:
        self._reset_pubsub()
        self._client.close()


def _remaining(deadline: float | None, task_id: str) -> float:
    if deadline is None:
        return 3600.0
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError(
            f"result of {task_id} not ready in time; is a worker consuming its queue? "
            f"(`celeriac inspect` or the worker log tells)"
        )
    return remaining


def _decode(data: bytes | str) -> Meta:
    try:
        meta = loads_json(data)  # kombu's typed values too: a Celery worker's datetime result
    except SerializationError as exc:
        raise BackendError(f"stored result is not JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise BackendError("stored result is not a JSON object")
    return meta
