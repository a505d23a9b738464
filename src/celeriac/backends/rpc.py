"""The ``rpc://`` result backend: results travel back as AMQP messages, as Celery's do.

A client has one reply queue, named by a fresh id (its oid), and every task it sends carries
that id as ``reply_to``. The worker that runs the task publishes the result meta (JSON, the
keys of Celery's meta plus ``task_id``) to the default exchange with ``reply_to`` as routing
key and the task id as ``correlation_id``; the client reads its queue and keeps what came
until asked. Results are not stored anywhere else: only the client that sent a task can read
its result, once, and groups and chords need a storing backend (Redis, SQLite). It needs an
AMQP broker (``amqp://``), on whose node the replies travel.
"""

from __future__ import annotations

import builtins
import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import amqp
import orjson

from .. import states
from ..errors import ConfigurationError, TimeoutError
from ..urls import safe_url
from .base import ChordClaim, ChordPart, Meta

if TYPE_CHECKING:
    from ..config import Settings

logger = logging.getLogger(__name__)

AMQP_ERRORS: tuple[type[Exception], ...] = (OSError, amqp.exceptions.AMQPError)


class RpcBackend:
    def __init__(self, url: str, settings: Settings, client_name: str = "celeriac") -> None:
        from ..brokers import amqp as amqp_broker

        self.url = url
        broker_url = str(settings.resolved("broker_url") or "")  # CELERIAC_BROKER_URL too
        if not broker_url.lower().startswith(("amqp", "pyamqp")):
            raise ConfigurationError(
                f"the rpc:// result backend sends results over the AMQP broker, but "
                f"broker_url is {safe_url(broker_url)!r}; use an amqp:// broker or a storing "
                f"result backend (redis://, sqlite://)"
            )
        # its connections are named "<client>:results publisher/consumer" in RabbitMQ's list
        self._broker = amqp_broker.AmqpBroker(
            broker_url, settings, client_name=f"{client_name}:results"
        )
        self._expires_ms = int(float(settings.get("result_expires") or 86400) * 1000)
        self._persistent = bool(settings.get("result_persistent"))
        self._lock = threading.RLock()
        self._conn: Any = None
        self._channel: Any = None
        self._results: dict[str, Meta] = {}

    # the reading side
    def _open(self) -> Any:
        if self._channel is None:
            from ..brokers import amqp as amqp_broker

            conn = self._broker.connect("consumer")
            channel = conn.channel()
            oid = amqp_broker.reply_queue_name()
            amqp_broker.declare_reply_queue(channel, oid, self._expires_ms)
            channel.basic_consume(oid, no_ack=True, callback=self._on_result)
            self._conn, self._channel = conn, channel
        return self._channel

    def _on_result(self, message: Any) -> None:
        try:
            meta = orjson.loads(message.body)
        except orjson.JSONDecodeError:
            logger.warning("ignoring a result message that is not JSON")
            return
        if not isinstance(meta, dict):
            return
        task_id = meta.get("task_id") or message.properties.get("correlation_id")
        if isinstance(task_id, str):
            previous = self._results.get(task_id)
            if previous is None or previous.get("status") not in states.READY_STATES:
                self._results[task_id] = meta

    def _drain(self, timeout_s: float) -> None:
        with self._lock:
            self._open()
            try:
                self._conn.drain_events(timeout=max(0.0, timeout_s))
            except builtins.TimeoutError:
                return
            except AMQP_ERRORS as exc:
                self._conn = self._channel = None
                raise self._broker.unreachable(exc) from exc

    def get_meta(self, task_id: str) -> Meta | None:
        self._drain(0.0)
        return self._results.get(task_id)

    def get_many(self, task_ids: Sequence[str]) -> dict[str, Meta]:
        self._drain(0.0)
        return {t: self._results[t] for t in task_ids if t in self._results}

    def wait_for(self, task_id: str, timeout_s: float | None, interval_s: float = 0.5) -> Meta:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            meta = self._results.get(task_id)
            if meta is not None and meta.get("status") in states.READY_STATES:
                return meta
            left = 1.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"result of {task_id} not ready in time; is a worker consuming its queue?"
                )
            self._drain(min(left, 1.0))

    def forget(self, task_id: str) -> None:
        self._results.pop(task_id, None)

    # the worker's side
    def store(self, task_id: str, meta: Meta, expires_s: float | None) -> None:
        from ..brokers import amqp as amqp_broker

        final = meta.get("status") in states.READY_STATES
        reply_to, correlation_id = amqp_broker.reply_address(task_id, final=final)
        if not reply_to:
            logger.warning(
                "result of %s not sent: its message named no reply_to queue (rpc://)", task_id
            )
            return
        body = orjson.dumps({"task_id": task_id, **meta})
        self._broker.send_reply(
            reply_to, body, correlation_id or task_id, 2 if self._persistent else 1
        )

    # what rpc:// does not keep
    def _no_groups(self) -> ConfigurationError:
        return ConfigurationError(
            "the rpc:// result backend keeps no group or chord state; use a storing "
            "result backend (redis://, sqlite://) for groups and chords"
        )

    def save_group(self, group_id: str, meta: Meta, expires_s: float | None) -> None:
        raise self._no_groups()

    def get_group(self, group_id: str) -> Meta | None:
        return None

    def delete_group(self, group_id: str) -> None:
        return None

    def set_chord_size(self, group_id: str, size: int) -> None:
        raise self._no_groups()

    def on_chord_part_return(self, part: ChordPart) -> ChordClaim | None:
        raise self._no_groups()

    def add_to_chord(self, group_id: str) -> None:
        raise self._no_groups()

    def finish_chord(self, claim: ChordClaim, failed: bool) -> None:
        raise self._no_groups()

    def close(self) -> None:
        with self._lock:
            conn, self._conn, self._channel = self._conn, None, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                logger.debug("closing the rpc:// connection", exc_info=True)
        self._broker.close()
