"""Waiting for one result on a RESP3 connection: subscribe and read in one round trip.

Celery's Redis backend publishes each ready result on the channel named after its key. A
waiter must subscribe before it reads the key, or a result stored in between is missed. On
RESP2 a subscribed connection can run nothing else, so that costs two round trips on two
connections (subscribe, wait for the confirmation, then read). On RESP3 a subscribed
connection still runs commands, and Redis runs one connection's commands in order: the
subscription and the read go out in one write, and the answer to the read comes after the
confirmation. Messages arrive as push replies on the same connection.

A finished wait stays subscribed: the next wait unsubscribes in the same write as its own
subscription, so a round trip costs one write and one read. A wait that ended before its
result came (a timeout) is unsubscribed when its AsyncResult is garbage-collected
(:meth:`ResultWaiter.release`), so no subscription outlives the result that wanted it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from .. import states
from ..resp import pack
from .base import Meta, decode_meta

logger = logging.getLogger(__name__)


class Resp3Unavailable(Exception):
    """Redis refused RESP3 (older than 6.0): wait the RESP2 way."""


class ResultWaiter:
    """One thread's connection for ``AsyncResult.get()``; not shared between threads."""

    def __init__(self, client: redis.Redis, client_name: str) -> None:
        kwargs = dict(client.connection_pool.connection_kwargs)
        kwargs.pop("client_name", None)
        kwargs["protocol"] = 3
        # a health check reads its PONG with redis-py's push handling, which would swallow
        # a result message that came first
        kwargs["health_check_interval"] = 0
        pool_class: Any = type(client.connection_pool.make_connection())
        self.pid = os.getpid()
        self._conn: Any = pool_class(**kwargs, client_name=f"{client_name}:wait")
        try:
            self._conn.connect()
        except redis.exceptions.ResponseError as exc:  # HELLO refused
            self._conn.disconnect()
            raise Resp3Unavailable(str(exc)) from exc
        self._subscribed: str | None = None
        self._owed = False  # a GET was sent whose answer is not read yet
        # the key of a wait that ended without its result (a timeout), still subscribed
        self.unfinished: str | None = None
        self._lock = threading.Lock()  # release() may come from another thread's gc
        self._dropped: set[str] = set()  # released while a wait held the connection

    def wait(self, key: str, remaining: Callable[[], float], recheck_s: float) -> Meta:
        """The ready meta stored under *key*. *remaining* gives the seconds left and raises
        when none are; the key is read again every *recheck_s* (a lost message only delays
        the answer)."""
        with self._lock:
            self._dropped.discard(key)
            self.unfinished = key
            try:
                meta = self._wait(key, remaining, recheck_s)
            finally:
                if self._dropped:
                    self._unsubscribe_dropped()
            self.unfinished = None
            return meta

    def release(self, key: str) -> None:
        """The AsyncResult of *key* is gone: drop the subscription a wait that ended without
        its result left behind. Never blocks (it runs from ``__del__``): when a wait holds
        the connection, that wait drops it on its way out."""
        if self.unfinished != key:
            return
        if not self._lock.acquire(blocking=False):
            self._dropped.add(key)
            return
        try:
            if self.unfinished == key:
                self._dropped.add(key)
                self._unsubscribe_dropped()
        finally:
            self._lock.release()

    def _unsubscribe_dropped(self) -> None:
        """Unsubscribe from a released key (the confirmation is read by the next wait)."""
        dropped, self._dropped = self._dropped, set()
        key = self._subscribed
        if key is None or key not in dropped or self.pid != os.getpid():
            return
        self._subscribed = self.unfinished = None
        try:
            self._conn.send_packed_command(pack(("UNSUBSCRIBE", key)))
        except (redis.exceptions.ConnectionError, OSError):  # gone: so is the subscription
            logger.debug("result waiter lost its connection while unsubscribing", exc_info=True)
            self._conn.disconnect()

    def _wait(self, key: str, remaining: Callable[[], float], recheck_s: float) -> Meta:
        commands: list[tuple[str, ...]] = []
        if self._subscribed != key:
            if self._subscribed is not None:
                commands.append(("UNSUBSCRIBE", self._subscribed))
            commands.append(("SUBSCRIBE", key))
        commands.append(("GET", key))
        self._subscribed = key
        self._conn.send_packed_command(pack(*commands))
        try:
            while True:
                meta = self._read_until_value(key)
                if meta is not None:
                    return meta
                next_check = time.monotonic() + recheck_s
                while True:
                    wait_s = min(remaining(), next_check - time.monotonic())
                    if wait_s <= 0:
                        break
                    if self._conn.can_read(timeout=wait_s):
                        meta = _ready(self._conn.read_response(push_request=True), key)
                        if meta is not None:
                            return meta
                self._conn.send_packed_command(pack(("GET", key)))
        except BaseException:
            if self._owed:  # an answer still on its way would be read as the next wait's
                self._conn.disconnect()
                self._subscribed = None
            raise

    def _read_until_value(self, key: str) -> Meta | None:
        """Read up to the answer of the GET sent last; a ready meta from it or from a message
        that came before it, else None."""
        self._owed = True
        found: Meta | None = None
        while True:
            reply = self._conn.read_response(push_request=True)
            if isinstance(reply, list):  # a push: (un)subscribe confirmation or a message
                found = found or _ready(reply, key)
                continue
            self._owed = False
            if found is None and reply is not None:
                found = _ready_meta(reply)
            return found

    def close(self) -> None:
        if self.pid == os.getpid():
            self._conn.disconnect()


def _ready(push: Any, key: str) -> Meta | None:
    """The ready meta a push message on *key*'s channel carries, if it is one."""
    if not isinstance(push, list) or len(push) != 3:
        return None
    kind, channel, data = push
    if kind not in (b"message", "message") or channel not in (key, key.encode()):
        return None
    return _ready_meta(data)


def _ready_meta(data: bytes | str) -> Meta | None:
    meta = decode_meta(data)
    return meta if meta.get("status") in states.READY_STATES else None
