"""The inspect commands that read a worker's state, answered in Celery's shapes: stats,
active, reserved, scheduled, query_task, registered, active_queues, report, memsample and
memdump (``ping``, ``revoked`` and ``conf`` are in control.py)."""

from __future__ import annotations

import logging
import os
import resource
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from ..flow.runtime import stats as flow_stats
from ..protocol import TaskMessage, parse_envelope
from ..urls import masked
from .task_book import request_info, scheduled_entry

if TYPE_CHECKING:
    from .control import ControlListener

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Any]
_samples: list[tuple[float, int]] = []  # memsample's readings, for memdump


def handlers(listener: ControlListener) -> dict[str, Handler]:
    return {
        "stats": lambda args: stats(listener),
        "active": lambda args: active(listener, bool(args.get("safe"))),
        "dump_active": lambda args: active(listener, bool(args.get("safe"))),
        "reserved": lambda args: reserved(listener),
        "dump_reserved": lambda args: reserved(listener),
        "scheduled": lambda args: scheduled(listener),
        "dump_schedule": lambda args: scheduled(listener),
        "query_task": lambda args: query_task(listener, args.get("ids")),
        "registered": lambda args: registered(listener, args),
        "dump_tasks": lambda args: registered(listener, args),
        "active_queues": lambda args: active_queues(listener),
        "report": lambda args: report(listener),
        "memsample": lambda args: memsample(),
        "memdump": lambda args: memdump(int(args.get("samples") or 10)),
        "clock": lambda args: {"clock": listener.clock()},
    }


def _records(listener: ControlListener) -> list[dict[str, Any]]:
    book = listener.book
    if book is None:
        return []
    return book.records(listener.pool_running())


def stats(listener: ControlListener) -> dict[str, Any]:
    runtime = listener.runtime
    total: Counter[str] = Counter()
    for record in _records(listener):
        total.update(record.get("total") or {})
    return {
        "total": dict(total),
        "pid": os.getpid(),
        "clock": str(listener.clock()),
        "uptime": round(time.time() - listener.started_at),
        "hostname": runtime.nodename,
        "pool": pool_stats(listener),
        "broker": broker_stats(runtime.app.broker_url, runtime.app.conf),
        "prefetch_count": runtime.concurrency * max(1, runtime.prefetch_multiplier),
        "rusage": rusage(),
        "flow_control": flow_stats(runtime.app),  # parked counts and each limit (flow/)
    }


def pool_stats(listener: ControlListener) -> dict[str, Any]:
    runtime = listener.runtime
    children = listener.child_pids()
    answer: dict[str, Any] = {
        "implementation": runtime.pool_name,
        "max-concurrency": runtime.concurrency,
        "processes": children or [os.getpid()],
        "max-tasks-per-child": runtime.max_tasks_per_child,
        "put-guarded-by-semaphore": False,
        "timeouts": [runtime.soft_time_limit_s or 0, runtime.time_limit_s or 0],
    }
    if runtime.pool_name == "prefork":
        running = listener.pool_running() or {}
        counts = {
            str(record.get("pid")): sum((record.get("total") or {}).values())
            for record in _records(listener)
            if record.get("pid")
        }
        done = sum(counts.values())
        answer["writes"] = {
            "total": done,
            "avg": f"{100 / max(1, len(counts)):.2f}%" if counts else "0.00%",
            "all": ", ".join(f"{100 * n / max(1, done):.2f}%" for n in counts.values()),
            "raw": ", ".join(str(n) for n in counts.values()),
            "strategy": "fair",
            "inqueues": {
                "total": len(running),
                "active": sum(1 for v in running.values() if v is not None),
            },
        }
    return answer


def broker_stats(url: str, conf: Any) -> dict[str, Any]:
    """Celery's ``broker`` block: the URL's parts, the password left out."""
    parts = urlsplit(url)
    options = dict(conf.get("broker_transport_options") or {})
    try:
        port = parts.port
    except ValueError:
        port = None
    return {
        "hostname": parts.hostname,
        "userid": parts.username,
        "virtual_host": parts.path.lstrip("/") or "/",
        "port": port,
        "insist": False,
        "ssl": parts.scheme in ("rediss",) or bool(conf.get("broker_use_ssl")),
        "transport": parts.scheme or "redis",
        "connect_timeout": conf.get("broker_connection_timeout"),
        "transport_options": masked("broker_transport_options", options),
        "login_method": None,
        "uri_prefix": None,
        "heartbeat": conf.get("broker_heartbeat"),
        "failover_strategy": "round-robin",
        "alternates": [],
    }


def rusage() -> dict[str, Any]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    names = [
        "utime",
        "stime",
        "maxrss",
        "ixrss",
        "idrss",
        "isrss",
        "minflt",
        "majflt",
        "nswap",
        "inblock",
        "oublock",
        "msgsnd",
        "msgrcv",
        "nsignals",
        "nvcsw",
        "nivcsw",
    ]
    return {name: getattr(usage, f"ru_{name}") for name in names}


def active(listener: ControlListener, safe: bool = False) -> list[dict[str, Any]]:
    found = []
    for record in _records(listener):
        for info in record.get("active") or []:
            item = {k: v for k, v in info.items() if k != "place"}
            if safe:
                item["args"], item["kwargs"] = repr(item["args"]), repr(item["kwargs"])
            found.append(item)
    return found


def scheduled(listener: ControlListener) -> list[dict[str, Any]]:
    """ETA/countdown tasks this worker has and that are not due: those it parked
    broker-side, and those it holds and has not reached yet."""
    now = time.time()
    found = [
        scheduled_entry(entry)
        for record in _records(listener)
        for entry in record.get("scheduled") or []
        if entry.get("eta_s", 0) > now
    ]
    for message, info in _held(listener):
        eta = message.eta
        if eta is not None and eta.timestamp() > now:
            found.append({"eta": eta.isoformat(), "priority": message.priority, "request": info})
    return found


def reserved(listener: ControlListener) -> list[dict[str, Any]]:
    """Tasks this worker holds and has not started (an ETA in the future: see scheduled)."""
    now = time.time()
    return [
        info
        for message, info in _held(listener)
        if message.eta is None or message.eta.timestamp() <= now
    ]


def _held(listener: ControlListener) -> list[tuple[TaskMessage, dict[str, Any]]]:
    """What this worker's consumers hold and have not started: the messages each one owns in
    the broker's unacked store, less the running ones and those just finished (their acks
    ride along with the next fetch)."""
    broker = listener.runtime.app.broker
    client = getattr(broker, "client", None)
    if client is None:
        return []
    from ..brokers.redis import OWNED_PREFIX, UNACKED

    records = _records(listener)
    skip = {info["id"] for r in records for info in r.get("active") or []}
    skip.update(task_id for r in records for task_id in r.get("finished") or [])
    receipts = [
        receipt for owner in listener.owners() for receipt in client.smembers(OWNED_PREFIX + owner)
    ]
    found = []
    for stored in client.hmget(UNACKED, receipts) if receipts else []:
        held = _held_message(stored, listener)
        if held is not None and held[0].id not in skip:
            found.append(held)
    return found


def _held_message(
    stored: bytes | None, listener: ControlListener
) -> tuple[TaskMessage, dict[str, Any]] | None:
    if not stored:
        return None
    try:
        envelope, _exchange, queue = orjson.loads(stored)
        raw = envelope.encode() if isinstance(envelope, str) else orjson.dumps(envelope)
        message = parse_envelope(raw, listener.runtime.app.conf.accept_content)
    except Exception as exc:  # a malformed entry: the worker dead-letters it when reached
        logger.debug("reserved: skipping an unreadable held message: %s", exc)
        return None
    info = request_info(message, listener.runtime.nodename, queue=str(queue))
    return message, info


def query_task(listener: ControlListener, ids: Any) -> dict[str, Any]:
    """Celery's ``{id: [state, info]}`` for the ids this worker knows: active, reserved or
    scheduled."""
    wanted = [ids] if isinstance(ids, str) else [str(i) for i in ids or []]
    known: dict[str, Any] = {}
    for info in active(listener):
        known.setdefault(info["id"], ["active", info])
    for info in reserved(listener):
        known.setdefault(info["id"], ["reserved", info])
    for entry in scheduled(listener):
        known.setdefault(entry["request"]["id"], ["scheduled", entry["request"]])
    return {task_id: known[task_id] for task_id in wanted if task_id in known}


def registered(listener: ControlListener, args: dict[str, Any]) -> list[str]:
    """Task names, with ``rate_limit``/``time_limit``-style attributes when asked (Celery's
    ``taskinfoitems``), built-in ``celery.*`` tasks only with ``builtins``."""
    tasks = listener.runtime.app.tasks
    items = args.get("taskinfoitems") or ()
    items = [items] if isinstance(items, str) else list(items)
    names = sorted(n for n in tasks if args.get("builtins") or not n.startswith("celery."))
    lines = []
    for name in names:
        task = tasks[name]
        fields = [
            f"{item}={getattr(task, item)}"
            for item in items
            if isinstance(item, str)
            and not item.startswith("_")
            and getattr(task, item, None) is not None
        ]
        lines.append(f"{name} [{' '.join(fields)}]" if fields else name)
    return lines


def active_queues(listener: ControlListener) -> list[dict[str, Any]]:
    """Celery's queue dicts (``Queue.as_dict(recurse=True)``)."""
    app = listener.runtime.app
    answer: list[dict[str, Any]] = []
    for name in listener.queues():
        queue = app.queues[name]
        exchange_name = queue.exchange_name or name
        answer.append(
            {
                "name": queue.name,
                "exchange": {
                    "name": exchange_name,
                    "type": queue.exchange_type,
                    "arguments": None,
                    "durable": True,
                    "passive": False,
                    "auto_delete": False,
                    "delivery_mode": None,
                    "no_declare": False,
                },
                "routing_key": queue.routing_key or name,
                "queue_arguments": queue.queue_arguments,
                "binding_arguments": queue.binding_arguments,
                "consumer_arguments": None,
                "durable": queue.durable,
                "exclusive": queue.exclusive,
                "auto_delete": queue.auto_delete,
                "no_ack": False,
                "alias": queue.alias,
                "bindings": [],
                "no_declare": None,
                "expires": None,
                "message_ttl": None,
                "max_length": None,
                "max_length_bytes": None,
                "max_priority": queue.max_priority,
            }
        )
    return answer


def report(listener: ControlListener) -> dict[str, str]:
    from ..cli.main import CliState
    from ..cli.report_cmd import report_text

    state = CliState(None, None, None, _app=listener.runtime.app)
    return {"ok": report_text(state)}


def _rss_bytes() -> int:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # no psutil view here: the peak is what the OS tells
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.2f}{unit}"
        value /= 1024
    return f"{value:.2f}GB"


def memsample() -> str:
    """Celery's: this process's resident memory now, kept for ``memdump``."""
    size = _rss_bytes()
    _samples.append((time.time(), size))
    del _samples[:-1000]
    return _human(size)


def memdump(samples: int = 10) -> str:
    """Celery's: the last memsample readings, and the memory now."""
    taken = _samples[-max(1, samples) :]
    lines = [f"- rss (sample): {_human(size)}" for _, size in taken] or ["- no samples yet"]
    lines.append(f"- rss (now): {_human(_rss_bytes())}")
    return "\n".join(lines) + "\n"
