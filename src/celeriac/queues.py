"""Queue declarations as Celery writes them: ``task_queues`` of ``Queue``/``Exchange`` objects.

``Queue`` and ``Exchange`` here take kombu's arguments. A project that already builds
``kombu.Queue`` objects keeps them: they are read by their attributes (``name``,
``exchange.name``, ``exchange.type``, ``routing_key``, ``queue_arguments``...), never
imported. Celery's older dict form (``{"video": {"exchange": "media", "routing_key":
"media.video"}}``) works too.

As in Celery, a queue without an exchange is bound to ``task_default_exchange`` (named
after ``task_default_queue`` unless set) with ``task_default_routing_key`` (the same name
unless set). On Redis, as in kombu's Redis transport, ``x-max-priority`` changes nothing:
every queue has the four priority lists.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ImproperlyConfigured, QueueNotFound

EXCHANGE_TYPES = ("direct", "topic", "fanout", "headers")


@dataclass
class Exchange:
    """An exchange: where a message is published, and how its routing key picks queues."""

    name: str = ""
    type: str = "direct"
    durable: bool = True
    auto_delete: bool = False
    delivery_mode: int | str | None = None
    arguments: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ImproperlyConfigured(f"Exchange name must be a string, got {self.name!r}")
        if self.type not in EXCHANGE_TYPES:
            raise ImproperlyConfigured(
                f"Exchange {self.name!r} has type {self.type!r}; use one of "
                f"{', '.join(EXCHANGE_TYPES)}"
            )


@dataclass
class Queue:
    """A queue, the exchange it is bound to, and the routing key that binds it."""

    name: str = ""
    exchange: Exchange | str | None = None
    routing_key: str = ""
    durable: bool = True
    exclusive: bool = False
    auto_delete: bool = False
    queue_arguments: dict[str, Any] | None = None
    binding_arguments: dict[str, Any] | None = None
    max_priority: int | None = None
    alias: str | None = None
    options: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ImproperlyConfigured(f"Queue needs a non-empty name, got {self.name!r}")
        if isinstance(self.exchange, str):
            self.exchange = Exchange(self.exchange)

    @property
    def exchange_name(self) -> str:
        return self.exchange.name if isinstance(self.exchange, Exchange) else ""

    @property
    def exchange_type(self) -> str:
        return self.exchange.type if isinstance(self.exchange, Exchange) else "direct"

    @property
    def priority_limit(self) -> int | None:
        """``max_priority`` or ``x-max-priority``: kept for display; Redis ignores it."""
        arguments = self.queue_arguments or {}
        value = self.max_priority or arguments.get("x-max-priority")
        return int(value) if value is not None else None


def exchange_of(value: Any, where: str) -> Exchange | None:
    """Our Exchange for *value*: ours, a name, or a kombu-like object read by attributes."""
    if value is None or isinstance(value, Exchange):
        return value
    if isinstance(value, str):
        return Exchange(value)
    name = getattr(value, "name", None)
    if not isinstance(name, str):
        raise ImproperlyConfigured(
            f"{where}: exchange {value!r} is not an Exchange or an exchange name"
        )
    return Exchange(
        name=name,
        type=str(getattr(value, "type", None) or "direct"),
        durable=bool(getattr(value, "durable", True)),
        auto_delete=bool(getattr(value, "auto_delete", False)),
        delivery_mode=getattr(value, "delivery_mode", None),
        arguments=dict(getattr(value, "arguments", None) or {}) or None,
    )


def queue_of(value: Any) -> Queue:
    """Our Queue for *value* (a copy of ours, or a kombu-like object read by its
    attributes): filling in the defaults never changes the user's object."""
    if isinstance(value, Queue):
        return dataclasses.replace(value, options=dict(value.options))
    name = getattr(value, "name", None)
    if not isinstance(name, str) or not name or not hasattr(value, "exchange"):
        raise ImproperlyConfigured(
            f"task_queues holds {value!r}; give Queue objects (celeriac's or kombu's), "
            f"or a dict of queue name to options"
        )
    return Queue(
        name=name,
        exchange=exchange_of(getattr(value, "exchange", None), f"queue {name!r}"),
        routing_key=getattr(value, "routing_key", None) or "",
        durable=bool(getattr(value, "durable", True)),
        exclusive=bool(getattr(value, "exclusive", False)),
        auto_delete=bool(getattr(value, "auto_delete", False)),
        queue_arguments=dict(getattr(value, "queue_arguments", None) or {}) or None,
        binding_arguments=dict(getattr(value, "binding_arguments", None) or {}) or None,
        max_priority=getattr(value, "max_priority", None),
        alias=getattr(value, "alias", None),
    )


def queue_from_options(name: str, options: Mapping[str, Any]) -> Queue:
    """Celery's dict form: ``{"exchange": ..., "exchange_type": ..., "routing_key": ...}``
    (``binding_key`` is the older name of ``routing_key``)."""
    if not isinstance(options, Mapping):
        raise ImproperlyConfigured(
            f"task_queues[{name!r}] is {type(options).__name__}; give a dict of options "
            f"such as {{'exchange': 'media', 'routing_key': 'media.video'}} or a Queue"
        )
    options = dict(options)
    exchange = exchange_of(options.pop("exchange", None), f"task_queues[{name!r}]")
    exchange_type = options.pop("exchange_type", None)
    if exchange_type is not None:
        exchange = Exchange(exchange.name if exchange else name, type=exchange_type)
    routing_key = options.pop("routing_key", None) or options.pop("binding_key", None) or name
    known = {key: options.pop(key) for key in list(options) if key in _QUEUE_FIELDS}
    return Queue(name, exchange=exchange, routing_key=routing_key, options=options, **known)


_QUEUE_FIELDS = frozenset(
    {"durable", "exclusive", "auto_delete", "queue_arguments", "binding_arguments"}
    | {"max_priority", "alias"}
)


@dataclass(frozen=True)
class Destination:
    """Where one message goes: the queues that receive a copy, and the exchange and routing
    key written into its ``delivery_info``."""

    queues: tuple[str, ...]
    exchange: str
    routing_key: str


class Queues:
    """The app's declared queues (``task_queues``), and the bindings between them and their
    exchanges that routing by exchange and routing key reads."""

    def __init__(
        self,
        queues: Any,
        default_queue: str = "celery",
        default_exchange: str | None = None,
        default_exchange_type: str = "direct",
        default_routing_key: str | None = None,
        create_missing: bool = True,
    ) -> None:
        self.default_queue = default_queue
        self.default_exchange = Exchange(default_exchange or default_queue, default_exchange_type)
        self.default_routing_key = default_routing_key or default_queue
        self.create_missing = create_missing
        self._lock = threading.Lock()
        self.declared: dict[str, Queue] = {}
        self.fans_out = False
        for queue in _as_queue_list(queues):
            self._add(queue)
        if not self.declared:  # Celery's: no task_queues means the default queue alone
            self._add(Queue(default_queue, self.default_exchange, self.default_routing_key))

    def _add(self, queue: Queue) -> Queue:
        if not queue.exchange_name:
            queue.exchange = self.default_exchange
        if not queue.routing_key:
            queue.routing_key = self.default_routing_key
        binding = (queue.exchange_name, queue.routing_key)
        if queue.exchange_type == "topic" or any(
            (q.exchange_name, q.routing_key) == binding for q in self.declared.values()
        ):
            self.fans_out = True  # one routing key may reach several queues: no shortcut
        self.declared[queue.name] = queue
        return queue

    def names(self) -> list[str]:
        return list(self.declared)

    def __getitem__(self, name: str) -> Queue:
        """The queue of that name or alias; an undeclared one is created (bound to an
        exchange of its own name) unless ``task_create_missing_queues`` is off."""
        found = self.declared.get(name) or self._by_alias(name)
        if found is not None:
            return found
        if not self.create_missing:
            raise QueueNotFound(
                f"queue {name!r} is not declared in task_queues and task_create_missing_queues "
                f"is off; add Queue({name!r}) to task_queues or route to one of "
                f"{sorted(self.declared)}"
            )
        with self._lock:
            return self.declared.get(name) or self._add(Queue(name, Exchange(name), name))

    def _by_alias(self, name: str) -> Queue | None:
        for queue in self.declared.values():
            if queue.alias == name:
                return queue
        return None

    def select(self, names: Sequence[str] | None) -> list[str]:
        """The queues a worker consumes: *names* (``-Q``), each declared or created, or
        every declared queue when none is given, as a Celery worker does."""
        if not names:
            return self.names()
        return [self[name].name for name in names]

    def destination(
        self, queue: Any = None, exchange: Any = None, routing_key: str | None = None
    ) -> Destination:
        """Celery's routing rules. A queue on a direct exchange receives the message itself
        unless both an exchange and a routing key are given; otherwise the exchange's
        bindings pick the queues: an equal routing key on a direct exchange, kombu's
        ``*``/``#`` patterns on a topic exchange."""
        declared: Queue | None = None
        if queue is not None:
            declared = queue_of(queue) if not isinstance(queue, str) else self[queue]
        elif not exchange:
            declared = self[self.default_queue]
        exchange_name = _exchange_name(exchange)
        if declared is not None:
            if declared.exchange_type == "direct" and not (exchange_name and routing_key):
                return Destination((declared.name,), "", declared.name)
            exchange_name = exchange_name or declared.exchange_name
            routing_key = routing_key or declared.routing_key
        if declared is not None and exchange_name == declared.exchange_name:
            kind = declared.exchange_type
        else:  # the exchange given, of the type its declared queues give it
            kind = self._type_of(exchange, exchange_name)
        key = routing_key or self.default_routing_key
        if kind not in ("direct", "topic"):
            raise QueueNotFound(
                f"exchange {exchange_name!r} is a {kind} exchange; celeriac routes tasks through "
                f"direct and topic exchanges only (kombu's Redis transport broadcasts fanout "
                f"messages over pub/sub, where a worker that is not listening loses them)"
            )
        bound = self.bound(exchange_name, kind, key)
        if not bound:
            raise QueueNotFound(
                f"no queue in task_queues is bound to exchange {exchange_name!r} with routing "
                f"key {key!r}, so the message would be lost; declare one, e.g. "
                f"Queue('name', Exchange({exchange_name!r}, type={kind!r}), routing_key={key!r})"
            )
        return Destination(bound, exchange_name, key)

    def _type_of(self, exchange: Any, name: str) -> str:
        given = getattr(exchange, "type", None)
        if isinstance(given, str):
            return given
        for queue in self.declared.values():
            if queue.exchange_name == name:
                return queue.exchange_type
        return "direct"

    def bound(self, exchange: str, kind: str, routing_key: str) -> tuple[str, ...]:
        """The queues bound to *exchange* whose binding key matches *routing_key*."""
        found = []
        for queue in list(self.declared.values()):
            if queue.exchange_name != exchange:
                continue
            if kind == "topic":
                matched = topic_pattern(queue.routing_key).match(routing_key) is not None
            else:
                matched = queue.routing_key == routing_key
            if matched:
                found.append(queue.name)
        return tuple(found)


BINDING_SEP = "\x06\x16"


def binding_members(queues: Iterable[Queue]) -> list[tuple[str, str]]:
    """kombu's Redis binding table entries for *queues*: (exchange, member), where the member
    is ``routing_key SEP pattern SEP queue`` (the pattern only for topic exchanges)."""
    members = []
    for queue in queues:
        exchange = queue.exchange_name or queue.name
        pattern = topic_pattern(queue.routing_key).pattern if queue.exchange_type == "topic" else ""
        members.append((exchange, BINDING_SEP.join([queue.routing_key, pattern, queue.name])))
    return members


def declare_bindings(broker: Any, queues: Iterable[Queue]) -> None:
    """Make the worker's queues reachable before it says "ready.", as a Celery worker does:
    on RabbitMQ the queues, exchanges and bindings are declared (a message published to an
    exchange before its queue exists is dropped by the broker); on Redis the binding sets a
    Celery client reads to route by exchange and routing key are written. The other brokers
    are celeriac's own."""
    from .brokers.redis import RedisBroker

    declare_queues = getattr(broker, "declare_queues", None)
    if declare_queues is not None:
        declare_queues(list(queues))
        return
    if not isinstance(broker, RedisBroker):
        return
    pipe = broker.client.pipeline(transaction=False)
    for exchange, member in binding_members(queues):
        pipe.sadd(f"_kombu.binding.{exchange}", member)
        pipe.sadd(f"_kombu.binding_permanent.{exchange}", member)  # kombu 5.7's sweep keeps it
    pipe.execute()


def topic_pattern(binding_key: str) -> re.Pattern[str]:
    """kombu's topic match: words split on dots, ``*`` one word, ``#`` any run of words."""
    cached = _patterns.get(binding_key)
    if cached is None:
        words = {"*": r"[^.]+", "#": r".*?"}
        regex = r"\.".join(words.get(word, re.escape(word)) for word in binding_key.split("."))
        cached = _patterns[binding_key] = re.compile(f"^{regex}$")
    return cached


_patterns: dict[str, re.Pattern[str]] = {}


def _exchange_name(exchange: Any) -> str:
    if exchange is None:
        return ""
    name = exchange if isinstance(exchange, str) else getattr(exchange, "name", None)
    if not isinstance(name, str):
        raise ImproperlyConfigured(f"exchange {exchange!r} is not an Exchange or a name")
    return name


def _as_queue_list(queues: Any) -> Iterable[Queue]:
    if queues is None:
        return []
    if isinstance(queues, Mapping):
        return [
            queue_from_options(str(name), value) if isinstance(value, Mapping) else queue_of(value)
            for name, value in queues.items()
        ]
    if isinstance(queues, (str, bytes)) or not isinstance(queues, Iterable):
        raise ImproperlyConfigured(
            f"task_queues is {type(queues).__name__}; give a list of Queue objects or a dict "
            f"of queue name to options"
        )
    return [queue_of(value) for value in queues]
