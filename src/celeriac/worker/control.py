"""The worker's side of remote control: listen on Celery's pidbox channel and answer.

Handlers return JSON-able answers; a request with a reply_to gets ``{nodename: answer}``
pushed to the caller's reply list, exactly as a Celery worker replies.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from .. import pidbox, pidbox_amqp, states
from ..backends.base import build_meta, encode_exception
from ..brokers.redis import CONNECTION_ERRORS
from ..control import REVOKE_TTL_S
from ..errors import TaskRevokedError
from ..redis_connect import separate_client
from ..urls import masked
from . import control_actions, control_commands, control_inspect, control_tree, revoked
from . import events as worker_events
from .consumed_queues import ConsumedQueues
from .control_commands import ControlState, control_command, inspect_command
from .execute import result_expires_s
from .task_book import TaskBook

__all__ = ["ControlListener", "ControlState", "control_command", "inspect_command"]

if TYPE_CHECKING:
    from ..app import Celeriac
    from .runtime import WorkerRuntime

logger = logging.getLogger(__name__)

Terminate = Callable[[str, int], bool]


class ControlListener:
    """Answers remote control for one worker. Made before the pool forks: the record of
    what runs where (task_book) and the consumed queues are shared with prefork children."""

    def __init__(
        self,
        runtime: WorkerRuntime,
        terminate: Terminate | None = None,
        running: Callable[[], set[str]] | None = None,
        pool: Any = None,
    ) -> None:
        self.runtime = runtime
        self.pool = pool
        self.terminate = terminate or getattr(pool, "terminate_task", None)
        # the ids running in this worker: the pool's (prefork children), else this process's
        self.running = running or getattr(pool, "running_ids", None) or revoked.running_here
        self.started_at = time.time()
        self._clock = 0
        self._stopped = False
        self._subscribed = threading.Event()
        self._thread: threading.Thread | None = None
        self.consumed = runtime.consumed
        self.book: TaskBook | None = None
        if pool is not None:  # a real worker: changeable queues and a record of its tasks
            if self.consumed is None:
                self.consumed = runtime.consumed = ConsumedQueues(runtime.queues)
            table = getattr(pool, "table", None)
            self.book = TaskBook(runtime.nodename, table.count if table is not None else 0)
            self.book.install()
        self.handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "ping": lambda args: {"ok": "pong"},
            "revoke": self._revoke,
            "revoke_by_stamped_headers": self._revoke_by_stamped_headers,
            "revoked": lambda args: sorted(
                i for i in self.runtime.app.broker.revoked_ids() if not revoked.is_stamp_token(i)
            ),
            "dump_revoked": lambda args: self.handlers["revoked"](args),
            "conf": self._conf,
            "shutdown": self._shutdown,
            "hello": self._hello,
            "enable_events": lambda args: _switch_task_events(True),
            "disable_events": lambda args: _switch_task_events(False),
            "tree": lambda args: control_tree.measure(self),
            **control_inspect.handlers(self),
            **control_actions.handlers(self),
        }

    def _hello(self, args: dict[str, Any]) -> dict[str, Any] | None:
        """Celery's mingle: a worker starting up asks the others for their revoked ids."""
        if args.get("from_node") == self.runtime.nodename:
            return None
        ids = self.handlers["revoked"](args)
        return {"revoked": ids, "clock": self.clock()}

    # what the command modules read
    def clock(self) -> int:
        self._clock += 1
        return self._clock

    def revoke_command(self, args: dict[str, Any]) -> dict[str, str]:
        return self._revoke(args)

    def queues(self) -> list[str]:
        return self.consumed.names() if self.consumed is not None else list(self.runtime.queues)

    def children(self) -> list[Any]:
        """Prefork's live children (index, pid), by index; [] for the other pools."""
        found = getattr(self.pool, "children", None) or {}
        return sorted((c for c in list(found.values()) if not c.retiring), key=lambda c: c.index)

    def child_pids(self) -> list[int]:
        return [child.pid for child in self.children()]

    def pool_running(self) -> dict[int, str | None] | None:
        """Prefork: live child index -> the id of the task it runs (None: idle)."""
        table = getattr(self.pool, "table", None)
        if table is None:
            return None
        answer: dict[int, str | None] = {}
        for child in self.children():
            running = table.running(child.index)
            answer[child.index] = running.task_id if running is not None else None
        return answer

    def owners(self) -> list[str]:
        """The broker owner ids of this worker's consumers (whose held messages are ours)."""
        owners = getattr(self.pool, "_owners", None)
        if owners is not None:
            return list(owners())
        return [str(self.runtime.app.broker.owner)]

    def start(self) -> bool:
        shared = getattr(self.runtime.app.broker, "client", None)
        if shared is None:  # RabbitMQ: the celery.pidbox exchange (None on other brokers)
            self._thread = pidbox_amqp.start_listener(self)
            return self._thread is not None
        # a client of its own: the prefork manager closes the app's connections before every
        # fork (a child must not inherit them), which would pull this thread's socket away
        # named, as every connection is (inspect tree); a sentinel client's follows the master
        name = shared.connection_pool.connection_kwargs.get("client_name") or "celeriac"
        client = separate_client(shared, f"{name}:control")
        self._thread = threading.Thread(
            target=self._run, args=(client,), daemon=True, name="celeriac-control"
        )
        self._thread.start()
        return True

    def wait_subscribed(self, timeout_s: float) -> bool:
        """Block until the listener hears broadcasts (a ping sent after this is answered)."""
        return self._thread is None or self._subscribed.wait(timeout_s)

    def stop(self) -> None:
        self._stopped = True
        if self.book is not None:
            self.book.uninstall()

    def _run(self, client: Any) -> None:
        db = int(client.connection_pool.connection_kwargs.get("db", 0))
        lost = False
        while not self._stopped:
            pubsub = client.pubsub()
            try:
                pubsub.subscribe(pidbox.channel(db))
                while not self._stopped:
                    message = pubsub.get_message(timeout=0.5)
                    kind = message.get("type") if message else None
                    if kind == "subscribe":
                        self._subscribed.set()
                        if lost:
                            logger.info("remote control listener: subscribed again")
                            lost = False
                    elif kind == "message":
                        self.handle(message["data"], client)
            except CONNECTION_ERRORS as exc:  # broker gone: say it once, retry each second
                if not lost:
                    logger.warning("remote control listener lost the broker: %s; retrying", exc)
                lost = True
                time.sleep(1.0)
            except Exception as exc:  # never take the worker down
                logger.warning("remote control listener: %s; retrying", exc, exc_info=True)
                time.sleep(1.0)
            finally:
                _close_quietly(pubsub)
        try:
            client.close()
        except CONNECTION_ERRORS:
            logger.debug("error closing the control client", exc_info=True)

    def handle(self, raw: bytes, client: Any) -> None:
        try:
            body, _headers = pidbox.decode(raw)
        except ValueError as exc:
            logger.warning("ignoring a malformed control message: %s", exc)
            return
        destination = body.get("destination")
        if destination and self.runtime.nodename not in destination:
            return
        method = str(body.get("method"))
        handler = self.handlers.get(method) or control_commands.find(method, self._state())
        arguments = body.get("arguments") or {}
        try:
            answer = handler(arguments) if handler else {"error": f"unknown command {method!r}"}
        except Exception as exc:
            logger.exception("control command %s failed", method)
            answer = {"error": repr(exc)}
        reply_to = body.get("reply_to")
        ticket = body.get("ticket")
        if isinstance(reply_to, dict) and ticket:
            self._reply(client, answer, str(ticket), str(reply_to.get("routing_key")))

    def _state(self) -> ControlState:
        runtime = self.runtime
        return ControlState(runtime.app, runtime.nodename, runtime)

    def _reply(self, client: Any, answer: Any, ticket: str, routing_key: str) -> None:
        if isinstance(client, pidbox_amqp.Replier):
            client.send_reply(
                pidbox.reply(self.runtime.nodename, answer, ticket, routing_key), routing_key
            )
            return
        binding_key = f"_kombu.binding.{pidbox.REPLY_EXCHANGE}"
        for member in client.smembers(binding_key):
            text = member.decode() if isinstance(member, bytes) else str(member)
            key, _, rest = text.partition("\x06\x16")
            if key == routing_key:
                queue = rest.partition("\x06\x16")[2]
                client.lpush(
                    queue, pidbox.reply(self.runtime.nodename, answer, ticket, routing_key)
                )
                return

    def _revoke(self, args: dict[str, Any]) -> dict[str, str]:
        ids = args.get("task_id")
        ids = [ids] if isinstance(ids, str) else [str(i) for i in ids or []]
        revoked.note(ids)
        self.runtime.app.broker.add_revoked(ids, REVOKE_TTL_S)
        logger.info("tasks flagged as revoked: %s", ", ".join(ids))
        running = self.running()
        mark_revoked(self.runtime.app, [task_id for task_id in ids if task_id not in running])
        if args.get("terminate"):
            signum = _signal_number(args.get("signal") or "SIGTERM")
            terminated = [
                task_id
                for task_id in ids
                if task_id in running and self.terminate is not None
                if self.terminate(task_id, signum)
            ]
            # Celery's replies
            if not terminated:
                return {"ok": "terminate: tasks unknown"}
            return {"ok": f"terminate: {', '.join(terminated)}"}
        return {"ok": f"tasks {', '.join(ids)} flagged as revoked"}

    def _revoke_by_stamped_headers(self, args: dict[str, Any]) -> dict[str, str]:
        """Celery's command: tasks whose stamps match are not run (queued ones are dropped
        as REVOKED when reached); with ``terminate``, matching running ones are stopped."""
        headers = stamped_headers_argument(args.get("headers"))
        tokens = revoked.stamp_tokens(headers)
        revoked.note_stamps(tokens)
        self.runtime.app.broker.add_revoked(tokens, REVOKE_TTL_S)
        logger.info("stamped headers flagged as revoked: %s", headers)
        if not args.get("terminate"):
            return {"ok": f"headers {headers} flagged as revoked, but not terminated"}
        signum = _signal_number(args.get("signal") or "SIGTERM")
        stopped: defaultdict[str, set[Any]] = defaultdict(set)  # Celery's reply shows it
        running = self.running()
        for task_id, stamps in revoked.running_with_stamps(headers).items():
            if task_id not in running:
                continue  # finished meanwhile (or its child died): nothing to stop
            if self.terminate is not None and self.terminate(task_id, signum):
                for name, value in stamps.items():
                    stopped[name].add(value)
            else:
                logger.warning(
                    "could not terminate %s on the %s pool: it ended before the signal",
                    task_id,
                    self.runtime.pool_name,
                )
        if not stopped:
            return {"ok": f"headers {headers} were not terminated"}
        return {"ok": f"headers {stopped} revoked"}

    def _conf(self, args: dict[str, Any]) -> dict[str, Any]:
        """Celery's ``inspect conf``: the settings set (all with ``with_defaults``), with
        passwords in URLs and secret-looking values masked, as JSON-able values."""
        app = self.runtime.app
        conf = app.conf
        every = bool(args.get("with_defaults"))
        answer = {key: conf[key] for key in conf if every or conf.is_set(key)}
        # the URLs in use (from the environment or -b as much as from the settings)
        answer.update(broker_url=app.broker_url, result_backend=app.backend_url)
        return {key: _jsonable(masked(key, value)) for key, value in answer.items()}

    def _shutdown(self, args: dict[str, Any]) -> dict[str, str]:
        logger.warning("remote shutdown requested")
        self.runtime.stop.warm.set()
        return {"ok": "shutting down"}


# states a revoke may overwrite: the task has not started anywhere (or waits to run again)
_NOT_STARTED = frozenset({states.PENDING, states.RECEIVED, states.RETRY, states.REJECTED})


def mark_revoked(app: Celeriac, task_ids: list[str]) -> None:
    """Store REVOKED now for revoked tasks no worker has started, so their callers learn it
    at once (Celery's workers do so on every revoke). A task another worker started (STARTED
    or a state of its own) or already finished keeps its state: the worker running it
    stores its outcome."""
    for task_id in task_ids:
        try:
            meta = app.backend.get_meta(task_id)
            state = (meta or {}).get("status", states.PENDING)
            if state not in _NOT_STARTED:
                continue
            revoked_meta = build_meta(
                task_id, states.REVOKED, encode_exception(TaskRevokedError("revoked"))
            )
            app.backend.store(task_id, revoked_meta, result_expires_s(app))
        except Exception as exc:  # a backend outage must not stop the revoke itself
            logger.warning("could not mark task %s as revoked in the backend: %s", task_id, exc)


def stamped_headers_argument(value: Any) -> dict[str, Any]:
    """``{name: value or [values]}`` from a revoke_by_stamped_headers request (Celery also
    takes a list of ``"name=value"``)."""
    if isinstance(value, list):
        pairs = [str(item).partition("=") for item in value]
        value = {name: found for name, _, found in pairs if name}
    if not isinstance(value, dict) or not value:
        raise ValueError(
            f"revoke_by_stamped_headers needs a dict of stamp names to values, got {value!r}"
        )
    return value


def _switch_task_events(on: bool) -> dict[str, str]:
    """enable_events / disable_events (Flower sends them): Celery's replies."""
    view = worker_events.current()
    if view is None:
        return {"error": "event dispatcher unavailable: this broker carries no events"}
    word = "enabled" if on else "disabled"
    changed = view.enable() if on else view.disable()
    if not changed:
        return {"ok": f"task events already {word}"}
    logger.info("Events of group {task} %s by remote.", word)
    return {"ok": f"task events {word}"}


def _jsonable(value: Any) -> Any:
    try:
        orjson.dumps(value)
    except TypeError:
        return repr(value)
    return value


def _close_quietly(pubsub: Any) -> None:
    try:
        pubsub.close()
    except CONNECTION_ERRORS:  # its socket is already dead
        logger.debug("error closing the control subscription", exc_info=True)


def _signal_number(value: Any) -> int:
    if isinstance(value, int):
        return value
    name = str(value).upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    return int(getattr(signal, name, signal.SIGTERM))
