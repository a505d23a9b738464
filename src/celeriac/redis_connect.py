"""Redis clients from a URL: a plain ``redis://``, ``rediss://`` or ``unix://`` URL, or
Celery's Redis Sentinel spelling, a ``;``-separated list of sentinels::

    sentinel://:password@127.0.0.1:26379/0;sentinel://127.0.0.1:26380/0

with the monitored master's name in ``broker_transport_options`` (or
``result_backend_transport_options`` for the result backend)::

    {"master_name": "mymaster", "sentinel_kwargs": {"password": "sentinel-pw"}}

The password and database of the first sentinel URL that has them are the master's (as
Celery reads them); ``sentinel_kwargs`` are the options of the connections to the sentinels
themselves (their own password, say). Every connection of a sentinel client asks the
sentinels where the master is when it connects, and drops itself when the server it talks
to turned out to be a replica (``READONLY``), so a reconnect after a failover finds the new
master. Clients are built lazily and hold no socket across ``fork()``: redis-py's pools
notice the new pid and open their own connections in the child.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from .config import Settings
from .errors import ConfigurationError
from .urls import redis_connection, safe_url

logger = logging.getLogger(__name__)

SENTINEL_SCHEME = "sentinel"
DEFAULT_SENTINEL_PORT = 26379
# a result store that lost the master keeps trying this long when behind Sentinel: more than
# a failover takes with Sentinel's usual settings (down-after plus election and promotion)
FAILOVER_WAIT_S = 30.0

# (the setting with the transport options, the setting with the TLS options) per role
_SETTINGS = {
    "broker": ("broker_transport_options", "broker_use_ssl"),
    "backend": ("result_backend_transport_options", "redis_backend_use_ssl"),
}


@dataclass(frozen=True)
class SentinelTarget:
    """What a ``sentinel://`` URL says: where the sentinels are and how to log in to the
    master they point at."""

    hosts: tuple[tuple[str, int], ...]
    db: int
    username: str | None
    password: str | None


def is_sentinel(url: str) -> bool:
    return url.split("://", 1)[0].strip().lower() == SENTINEL_SCHEME if "://" in url else False


def parse_sentinel_url(url: str) -> SentinelTarget:
    """The sentinels of a Celery-style ``sentinel://`` URL (several joined by ``;``)."""
    hosts: list[tuple[str, int]] = []
    db: int | None = None
    username: str | None = None
    password: str | None = None
    for chunk in (c.strip() for c in url.split(";")):
        if not chunk:
            continue
        try:
            parts = urlsplit(chunk)
            port = parts.port or DEFAULT_SENTINEL_PORT
        except ValueError:
            raise _bad_url(url, "a port is not a number") from None
        if parts.scheme.lower() != SENTINEL_SCHEME or not parts.hostname:
            raise _bad_url(url, f"{safe_url(chunk)!r} is not sentinel://host:port/db")
        if parts.query:
            raise _bad_url(
                url,
                "sentinel URLs take no ?options; put connection options in the transport "
                "options (socket_timeout, sentinel_kwargs, ...)",
            )
        hosts.append((parts.hostname, port))
        if db is None and parts.path.strip("/"):
            db = _db_number(url, parts.path)
        if password is None and parts.password is not None:
            password = unquote(parts.password)
            username = unquote(parts.username) if parts.username else None
    if not hosts:
        raise _bad_url(url, "it names no sentinel")
    return SentinelTarget(tuple(hosts), db or 0, username, password)


def _db_number(url: str, path: str) -> int:
    text = path.strip("/")
    if not text.isdigit():
        raise _bad_url(url, f"the database {text!r} is not a number")
    return int(text)


def _bad_url(url: str, reason: str) -> ConfigurationError:
    return ConfigurationError(
        f"invalid Redis Sentinel URL {safe_url(url)!r}: {reason}. Write it as Celery does: "
        f"sentinel://:password@host:26379/0;sentinel://host2:26379/0"
    )


def redis_client(url: str, settings: Settings, role: str, **connection: Any) -> redis.Redis:
    """A client for *url*: a plain Redis URL, or a ``sentinel://`` list whose master is
    looked up through the sentinels. *role* is ``broker`` or ``backend`` (which settings to
    read); *connection* are redis-py connection options (client_name, timeouts, ...)."""
    options_setting, ssl_setting = _SETTINGS[role]
    if not is_sentinel(url):
        redis_url, tls = redis_connection(url, settings.get(ssl_setting), ssl_setting)
        return redis.Redis.from_url(redis_url, **connection, **tls)
    target = parse_sentinel_url(url)
    options = _transport_options(settings, role)
    master_name = options.get("master_name")
    if not master_name or not isinstance(master_name, str):
        raise ConfigurationError(
            f"the Redis Sentinel URL {safe_url(url)!r} needs the name of the master the "
            f"sentinels monitor: set {options_setting} = {{'master_name': 'mymaster'}} (the "
            f"name in each sentinel's 'sentinel monitor <name> ...' line)"
        )
    connect_timeout = float(connection.get("socket_connect_timeout") or 4.0)
    _, tls = redis_connection("redis://sentinel", settings.get(ssl_setting), ssl_setting)
    tls["connection_class"] = (
        _FollowingSSLConnection if tls.pop("connection_class", None) else _FollowingConnection
    )
    manager = _Sentinel(
        list(target.hosts),
        min_other_sentinels=int(options.get("min_other_sentinels") or 0),
        sentinel_kwargs=_sentinel_kwargs(options, connect_timeout, len(target.hosts)),
        db=target.db,
        username=target.username,
        password=target.password,
        # one quick retry (a pooled connection to a master that is gone); the callers'
        # own loops wait out a failover, each attempt asking the sentinels again
        retry=Retry(NoBackoff(), 1),
        **connection,
        **tls,
    )
    client: redis.Redis = manager.master_for(master_name, redis_class=redis.Redis)
    return client


class _Following:
    """A connection to the master the sentinels name, that lets go of it when they announce
    another (``+switch-master``). A master that is demoted without dying (``SENTINEL
    FAILOVER``, a partition that heals) keeps taking writes until the sentinels next poll
    it, up to 10 s later; connections parked on it (a blocking move, a subscription) would
    wait there all that time. Each process watches the announcements in a thread of its own
    and shuts the sockets to the old master, so every user of one reconnects at once and
    asks the sentinels again."""

    connection_pool: Any
    host: str
    port: int

    def connect_to(self, address: tuple[str, int]) -> None:
        parent: Any = super()
        parent.connect_to(address)
        _follow(self)


class _FollowingConnection(_Following, redis.sentinel.SentinelManagedConnection):
    pass


class _FollowingSSLConnection(_Following, redis.sentinel.SentinelManagedSSLConnection):
    pass


_followed: weakref.WeakSet[_Following] = weakref.WeakSet()
_watchers: set[tuple[int, int, str]] = set()  # (pid, sentinel manager, master name)
_follow_lock = threading.Lock()
WATCH_RETRY_S = 1.0  # between attempts to subscribe when no sentinel answers


def _forget_after_fork() -> None:
    """A forked child follows only the connections it makes itself (its parent's sockets
    are its parent's), under a lock no thread of the parent can be holding."""
    global _follow_lock, _followed
    _follow_lock = threading.Lock()
    _followed = weakref.WeakSet()


os.register_at_fork(after_in_child=_forget_after_fork)


def _follow(conn: _Following) -> None:
    proxy = conn.connection_pool
    manager, name = proxy.sentinel_manager, proxy.service_name
    key = (os.getpid(), id(manager), name)
    with _follow_lock:
        _followed.add(conn)
        if key in _watchers:
            return
        _watchers.add(key)
    threading.Thread(
        target=_watch_switches, args=(manager, name), daemon=True, name="celeriac-sentinel"
    ).start()


def _watch_switches(manager: Any, name: str) -> None:
    """Listen to the sentinels' ``+switch-master`` announcements for good (a daemon)."""
    while True:
        for sentinel in list(manager.sentinels):
            pubsub = sentinel.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe("+switch-master")
                while True:
                    message = pubsub.get_message(timeout=5.0)
                    if message and message.get("type") == "message":
                        _switched(message["data"], name)
            except (redis.exceptions.RedisError, OSError) as exc:
                logger.debug("sentinel watch: %s; trying the next sentinel", exc)
            finally:
                with contextlib.suppress(redis.exceptions.RedisError, OSError):
                    pubsub.close()
        time.sleep(WATCH_RETRY_S)


def _switched(data: bytes | str, name: str) -> None:
    """``<name> <old ip> <old port> <new ip> <new port>``: let go of the old master."""
    text = data.decode() if isinstance(data, bytes) else str(data)
    fields = text.split()
    if len(fields) != 5 or fields[0] != name:
        return
    old = (fields[1], fields[2])
    with _follow_lock:
        conns = list(_followed)
    for conn in conns:
        sock: Any = getattr(conn, "_sock", None)
        if sock is None or (str(conn.host), str(conn.port)) != old:
            continue
        if conn.connection_pool.service_name != name:
            continue
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # its user reads EOF and reconnects
    logger.info("sentinel: master %s moved from %s:%s to %s:%s", name, *fields[1:])


class _Sentinel(redis.sentinel.Sentinel):
    """redis-py's Sentinel, with a lookup failure that names each sentinel and what it
    answered in a line (not the clients' full repr) and says what to check."""

    def discover_master(self, service_name: str) -> tuple[str, int]:
        problems = []
        manager: Any = self
        for index, sentinel in enumerate(self.sentinels):
            kwargs = sentinel.connection_pool.connection_kwargs
            where = f"{kwargs.get('host')}:{kwargs.get('port')}"
            try:
                masters: Any = sentinel.sentinel_masters()
            except (
                redis.exceptions.ConnectionError,
                redis.exceptions.ResponseError,
                redis.exceptions.TimeoutError,
            ) as exc:
                problems.append(f"{where}: {exc}")
                continue
            state = masters.get(service_name)
            if state and manager.check_master_state(state, service_name):
                # ask this one first next time
                self.sentinels[0], self.sentinels[index] = sentinel, self.sentinels[0]
                return str(state["ip"]), int(state["port"])
            problems.append(
                f"{where}: knows no master named {service_name!r}"
                if not state
                else f"{where}: says master {service_name!r} is down"
            )
        raise redis.sentinel.MasterNotFoundError(
            f"no sentinel named a master for {service_name!r} ({'; '.join(problems)}); "
            f"check that the sentinels are running, that the URL lists them, and that "
            f"master_name is the name in their 'sentinel monitor' line"
        )


def _transport_options(settings: Settings, role: str) -> Mapping[str, Any]:
    """The transport options for *role*; the result backend falls back to the broker's
    master_name and sentinel_kwargs when its own options leave them out (celeriac's
    result_backend defaults to the broker URL)."""
    broker = dict(settings.get("broker_transport_options") or {})
    if role == "broker":
        return broker
    own = dict(settings.get("result_backend_transport_options") or {})
    for key in ("master_name", "sentinel_kwargs", "min_other_sentinels"):
        if key not in own and key in broker:
            own[key] = broker[key]
    return own


def _sentinel_kwargs(
    options: Mapping[str, Any], connect_timeout: float, count: int
) -> dict[str, Any]:
    """Options of the connections to the sentinels: the user's ``sentinel_kwargs``, with
    timeouts that let a lookup over every sentinel end within the connect timeout."""
    given = options.get("sentinel_kwargs") or {}
    if not isinstance(given, Mapping):
        raise ConfigurationError(
            f"sentinel_kwargs must be a dict of redis-py connection options for the "
            f"sentinels (e.g. {{'password': '...'}}), not {type(given).__name__}"
        )
    kwargs = dict(given)
    share = max(0.05, connect_timeout / max(1, count))
    kwargs.setdefault("socket_connect_timeout", share)
    kwargs.setdefault("socket_timeout", share)
    kwargs.setdefault("retry", Retry(NoBackoff(), 0))
    return kwargs


def failover_wait_s(client: redis.Redis) -> float:
    """How long a write that must not be dropped (a task's result) keeps trying when the
    connection is lost: through a Sentinel failover for a sentinel client (the sentinels
    promote a replica within seconds), not at all for a plain Redis (one try)."""
    if isinstance(client.connection_pool, redis.sentinel.SentinelConnectionPool):
        return FAILOVER_WAIT_S
    return 0.0


def separate_client(client: redis.Redis, client_name: str) -> redis.Redis:
    """A client with a pool of its own, to the same server (or the same sentinel master) as
    *client*, whose connections are named *client_name*."""
    pool = client.connection_pool
    kwargs = dict(pool.connection_kwargs)
    kwargs["client_name"] = client_name
    new_pool: redis.ConnectionPool
    if isinstance(pool, redis.sentinel.SentinelConnectionPool):
        kwargs.pop("connection_pool", None)  # the old pool's: the new one sets its own
        pool_class: Any = redis.sentinel.SentinelConnectionPool
        new_pool = pool_class(
            pool.service_name,
            pool.sentinel_manager,
            connection_class=pool.connection_class,
            **kwargs,
        )
    else:
        new_pool = type(pool)(connection_class=pool.connection_class, **kwargs)
    return redis.Redis(connection_pool=new_pool)
