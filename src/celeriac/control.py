"""``app.control``: revoke, ping and inspect, as Celery's broadcast, so Celery workers obey
ours and ours obey Celery's."""

from __future__ import annotations

import logging
import signal as signal_module
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from . import pidbox, pidbox_amqp
from .errors import ConfigurationError
from .urls import safe_url

if TYPE_CHECKING:
    from .app import Celeriac

logger = logging.getLogger(__name__)

REVOKE_TTL_S = 3 * 3600  # Celery keeps revoked ids for three hours


def _ids(task_id: str | Iterable[str]) -> list[str]:
    return [task_id] if isinstance(task_id, str) else [str(t) for t in task_id]


class Control:
    def __init__(self, app: Celeriac) -> None:
        self.app = app

    def _redis(self) -> tuple[Any, int]:
        broker = self.app.broker
        client = getattr(broker, "client", None)
        if client is None:
            raise ConfigurationError(
                f"remote control needs a Redis broker; {safe_url(broker.url)!r} has no broadcast "
                f"channel. Revokes still work on this broker (they are stored), ping/inspect "
                f"do not."
            )
        return client, int(client.connection_pool.connection_kwargs.get("db", 0))

    def broadcast(
        self,
        command: str,
        arguments: dict[str, Any] | None = None,
        destination: Sequence[str] | None = None,
        reply: bool = False,
        timeout: float = 1.0,
        limit: int | None = None,
        callback: Callable[[dict[str, Any]], Any] | None = None,
        **_ignored: Any,
    ) -> list[dict[str, Any]] | None:
        """Send *command* to every worker (or those in *destination*); with *reply*, the
        ``{nodename: answer}`` replies that came within *timeout* (each also handed to
        *callback* as it arrives), Celery's ``app.control.broadcast``."""
        from .brokers.redis import CONNECTION_ERRORS
        from .errors import BrokerError
        from .urls import safe_url

        if pidbox_amqp.is_amqp(self.app.broker):  # RabbitMQ: the celery.pidbox exchange
            return pidbox_amqp.broadcast(
                self.app, command, arguments, destination, reply, timeout, limit, callback
            )
        try:
            return self._broadcast(command, arguments, destination, reply, timeout, limit, callback)
        except CONNECTION_ERRORS as exc:
            raise BrokerError(
                f"cannot reach the Redis broker at {safe_url(self.app.broker_url)} ({exc}); "
                "check that redis-server is running and that broker_url (or -b) is right"
            ) from None

    def _broadcast(
        self,
        command: str,
        arguments: dict[str, Any] | None,
        destination: Sequence[str] | None,
        reply: bool,
        timeout: float,
        limit: int | None,
        callback: Callable[[dict[str, Any]], Any] | None,
    ) -> list[dict[str, Any]] | None:
        client, db = self._redis()
        oid = str(uuid.uuid4()) if reply else None
        envelope, _ticket = pidbox.request(
            command, arguments or {}, list(destination) if destination else None, oid, timeout
        )
        if oid is None:
            client.publish(pidbox.channel(db), envelope)
            return None
        binding_key = f"_kombu.binding.{pidbox.REPLY_EXCHANGE}"
        client.sadd(binding_key, pidbox.reply_binding(oid))
        queue = pidbox.reply_queue(oid)
        replies: list[dict[str, Any]] = []
        try:
            client.publish(pidbox.channel(db), envelope)
            deadline = time.monotonic() + timeout
            while limit is None or len(replies) < limit:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                item = client.brpop([queue], timeout=max(0.01, min(remaining, 1.0)))
                if item is None:
                    continue
                try:
                    body, _headers = pidbox.decode(item[1])
                except ValueError as exc:  # a pickled or malformed reply: never decoded
                    logger.warning("ignoring a reply to %s: %s", command, exc)
                    continue
                replies.append(body)
                if callback is not None:
                    callback(body)
        finally:
            client.srem(binding_key, pidbox.reply_binding(oid))
            client.delete(queue)
        return replies

    def revoke(
        self,
        task_id: str | Iterable[str],
        destination: Sequence[str] | None = None,
        terminate: bool = False,
        signal: str | int = "SIGTERM",
        **_ignored: Any,
    ) -> None:
        """Revoke tasks everywhere: stored broker-side (workers started later see it too)
        and broadcast the way Celery does."""
        ids = _ids(task_id)
        signame = signal if isinstance(signal, str) else signal_module.Signals(signal).name
        self.app.broker.add_revoked(ids, REVOKE_TTL_S)
        broker = self.app.broker
        if getattr(broker, "client", None) is not None or pidbox_amqp.is_amqp(broker):
            self.broadcast(
                "revoke",
                {
                    "task_id": ids[0] if len(ids) == 1 else ids,
                    "terminate": terminate,
                    "signal": signame,
                },
                destination=destination,
            )

    def revoke_by_stamped_headers(
        self,
        headers: dict[str, Any] | list[str],
        destination: Sequence[str] | None = None,
        terminate: bool = False,
        signal: str | int = "SIGTERM",
        reply: bool = False,
        timeout: float = 1.0,
        limit: int | None = None,
        **_ignored: Any,
    ) -> list[dict[str, Any]] | None:
        """Revoke every task stamped with one of *headers* (``{name: value or [values]}``):
        stored broker-side, as revokes are, and broadcast as Celery's command (with
        ``reply=True``, the workers' answers are returned, as ``broadcast`` gives them)."""
        from .worker.control import stamped_headers_argument
        from .worker.revoked import stamp_tokens

        stamps = stamped_headers_argument(headers)
        signame = signal if isinstance(signal, str) else signal_module.Signals(signal).name
        self.app.broker.add_revoked(stamp_tokens(stamps), REVOKE_TTL_S)
        if getattr(self.app.broker, "client", None) is not None:
            arguments = {"headers": stamps, "terminate": terminate, "signal": signame}
            return self.broadcast(
                "revoke_by_stamped_headers",
                arguments,
                destination=destination,
                reply=reply,
                timeout=timeout,
                limit=limit,
            )
        return None

    def terminate(self, task_id: str, signal: str = "SIGTERM") -> None:
        self.revoke(task_id, terminate=True, signal=signal)

    def ping(
        self, destination: Sequence[str] | None = None, timeout: float = 1.0, **kwargs: Any
    ) -> list[Any]:
        kwargs.setdefault("reply", True)
        return self.broadcast("ping", destination=destination, timeout=timeout, **kwargs) or []

    # Celery's control commands: each broadcasts; pass reply=True for the workers' answers
    def shutdown(self, destination: Sequence[str] | None = None, **kwargs: Any) -> Any:
        return self.broadcast("shutdown", destination=destination, **kwargs)

    def rate_limit(
        self,
        task_name: str,
        rate_limit: str | int | None,
        destination: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """A task's new rate limit (``"10/m"``), stored on the task in every worker."""
        arguments = {"task_name": task_name, "rate_limit": rate_limit}
        return self.broadcast("rate_limit", arguments, destination, **kwargs)

    def time_limit(
        self,
        task_name: str,
        soft: float | None = None,
        hard: float | None = None,
        destination: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        arguments = {"task_name": task_name, "soft": soft, "hard": hard}
        return self.broadcast("time_limit", arguments, destination, **kwargs)

    def add_consumer(
        self,
        queue: str,
        exchange: str | None = None,
        exchange_type: str = "direct",
        routing_key: str | None = None,
        options: dict[str, Any] | None = None,
        destination: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Workers start consuming *queue* now (declared, bound as given)."""
        arguments = {
            "queue": queue,
            "exchange": exchange,
            "exchange_type": exchange_type,
            "routing_key": routing_key,
            **(options or {}),
        }
        return self.broadcast("add_consumer", arguments, destination, **kwargs)

    def cancel_consumer(
        self, queue: str, destination: Sequence[str] | None = None, **kwargs: Any
    ) -> Any:
        return self.broadcast("cancel_consumer", {"queue": queue}, destination, **kwargs)

    def pool_grow(self, n: int = 1, destination: Sequence[str] | None = None, **kwargs: Any) -> Any:
        return self.broadcast("pool_grow", {"n": n}, destination, **kwargs)

    def pool_shrink(
        self, n: int = 1, destination: Sequence[str] | None = None, **kwargs: Any
    ) -> Any:
        return self.broadcast("pool_shrink", {"n": n}, destination, **kwargs)

    def autoscale(
        self, max: int, min: int, destination: Sequence[str] | None = None, **kwargs: Any
    ) -> Any:
        return self.broadcast("autoscale", {"max": max, "min": min}, destination, **kwargs)

    def pool_restart(
        self,
        modules: Sequence[str] | None = None,
        reload: bool = False,
        reloader: Any = None,
        destination: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        arguments = {"modules": list(modules or []), "reload": reload}
        return self.broadcast("pool_restart", arguments, destination, **kwargs)

    def heartbeat(self, destination: Sequence[str] | None = None, **kwargs: Any) -> Any:
        return self.broadcast("heartbeat", destination=destination, **kwargs)

    def enable_events(self, destination: Sequence[str] | None = None, **kwargs: Any) -> Any:
        return self.broadcast("enable_events", destination=destination, **kwargs)

    def disable_events(self, destination: Sequence[str] | None = None, **kwargs: Any) -> Any:
        return self.broadcast("disable_events", destination=destination, **kwargs)

    def inspect(
        self, destination: Sequence[str] | None = None, timeout: float = 1.0, **options: Any
    ) -> Inspect:
        return Inspect(destination=destination, timeout=timeout, control=self, **options)


class Inspect:
    """``app.control.inspect()``: each method returns ``{nodename: answer}`` or None."""

    def __init__(
        self,
        destination: Sequence[str] | None = None,
        timeout: float = 1.0,
        callback: Any = None,
        connection: Any = None,
        app: Celeriac | None = None,
        limit: int | None = None,
        pattern: Any = None,
        matcher: Any = None,
        *,
        control: Control | None = None,
    ) -> None:
        """Celery's signature (``Inspect(app=app, timeout=2)``); *callback* gets each
        reply as it arrives; ``connection``, ``pattern`` and ``matcher`` are accepted and
        not used."""
        if control is None:
            if app is None:
                from .app import default_app

                app = default_app()
            control = app.control
        self.control = control
        self.app = control.app
        self.destination = destination
        self.timeout = timeout
        self.limit = limit
        self.callback = callback

    def _ask(self, command: str, **arguments: Any) -> dict[str, Any] | None:
        replies = self.control.broadcast(
            command,
            arguments,
            destination=self.destination,
            reply=True,
            timeout=self.timeout,
            limit=self.limit,
            callback=self.callback,
        )
        return flatten_reply(replies or []) or None

    def _request(self, command: str, **arguments: Any) -> dict[str, Any] | None:
        """Any command by name, a project's own ``@inspect_command`` too (Celery's name)."""
        return self._ask(command, **arguments)

    def ping(self) -> dict[str, Any] | None:
        return self._ask("ping")

    def active(self, safe: bool | None = None) -> dict[str, Any] | None:
        return self._ask("active", safe=safe) if safe is not None else self._ask("active")

    def registered(self, *taskinfoitems: str) -> dict[str, Any] | None:
        return self._ask("registered", taskinfoitems=list(taskinfoitems))

    def revoked(self) -> dict[str, Any] | None:
        return self._ask("revoked")

    def stats(self) -> dict[str, Any] | None:
        return self._ask("stats")

    def conf(self, with_defaults: bool = False) -> dict[str, Any] | None:
        """Each worker's settings (only those set, unless *with_defaults*), secrets masked."""
        return self._ask("conf", with_defaults=with_defaults)

    def active_queues(self) -> dict[str, Any] | None:
        return self._ask("active_queues")

    def reserved(self) -> dict[str, Any] | None:
        return self._ask("reserved")

    def scheduled(self) -> dict[str, Any] | None:
        return self._ask("scheduled")

    def query_task(self, *ids: str | Sequence[str]) -> dict[str, Any] | None:
        """``{node: {id: [state, request]}}`` for the ids each worker has (Celery's)."""
        flat = [i for item in ids for i in ([item] if isinstance(item, str) else item)]
        return self._ask("query_task", ids=flat)

    def report(self) -> dict[str, Any] | None:
        return self._ask("report")

    def clock(self) -> dict[str, Any] | None:
        return self._ask("clock")

    def memsample(self) -> dict[str, Any] | None:
        return self._ask("memsample")

    def memdump(self, samples: int = 10) -> dict[str, Any] | None:
        return self._ask("memdump", samples=samples)

    def tree(self) -> dict[str, Any] | None:
        """celeriac's own: each worker's process tree, connections and running tasks, as the
        worker measures them now (``celeriac inspect tree``)."""
        return self._ask("tree")

    registered_tasks = registered


def flatten_reply(replies: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """One ``{nodename: answer}`` dict from the replies of each node (Celery's helper)."""
    merged: dict[str, Any] = {}
    for item in replies:
        merged.update(item)
    return merged
