"""The control commands that change a running worker, answered as Celery answers them:
rate_limit, time_limit, add_consumer, cancel_consumer, pool_grow, pool_shrink, autoscale,
pool_restart, terminate and heartbeat (revoke and shutdown are in control.py).

A pool that cannot do what is asked says why, as ``{"error": ...}``."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..queues import Exchange, Queue, declare_bindings
from . import events as worker_events

if TYPE_CHECKING:
    from .control import ControlListener

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Any]
_RATE = re.compile(r"^\s*\d+(\.\d+)?\s*(/\s*[smh])?\s*$")


def ok(text: str) -> dict[str, str]:
    return {"ok": text}


def nok(text: str) -> dict[str, str]:
    return {"error": text}


def handlers(listener: ControlListener) -> dict[str, Handler]:
    return {
        "rate_limit": lambda args: rate_limit(listener, args.get("task_name"), args),
        "time_limit": lambda args: time_limit(listener, args),
        "add_consumer": lambda args: add_consumer(listener, args),
        "cancel_consumer": lambda args: cancel_consumer(listener, str(args.get("queue") or "")),
        "pool_grow": lambda args: pool_resize(listener, "pool_grow", _count(args)),
        "pool_shrink": lambda args: pool_resize(listener, "pool_shrink", _count(args)),
        "autoscale": lambda args: autoscale(listener, args.get("max"), args.get("min")),
        "pool_restart": lambda args: pool_restart(listener),
        "terminate": lambda args: listener.revoke_command(
            {**args, "terminate": True, "signal": args.get("signal") or "SIGTERM"}
        ),
        "heartbeat": lambda args: heartbeat(),
    }


def _count(args: dict[str, Any]) -> int:
    value = args.get("n", 1)
    try:
        return int(value if value is not None else 1)
    except (TypeError, ValueError):
        raise ValueError(f"n must be a whole number of processes, got {value!r}") from None


def rate_limit(listener: ControlListener, task_name: Any, args: dict[str, Any]) -> Any:
    """Store the task's new rate limit (``"10/m"``; ``0`` or empty turns it off)."""
    value = args.get("rate_limit")
    text = "" if value is None else str(value).strip()
    if text and not _RATE.match(text):
        return nok(
            f"Invalid rate limit string: {text!r}; use a number per second, minute or hour, "
            "e.g. 10/s, 100/m, 1000/h"
        )
    task = listener.runtime.app.tasks.get(str(task_name))
    if task is None:
        logger.error("rate limit attempt for unknown task %s", task_name)
        return nok("unknown task")
    disabled = text in ("", "0") or (text.split("/")[0].strip() in ("0", "0.0"))
    task.rate_limit = None if disabled else text
    _share(listener, task.name, rate_limit=task.rate_limit)
    if disabled:
        logger.info("rate limits disabled for tasks of type %s", task_name)
        return ok("rate limit disabled successfully")
    logger.info("new rate limit for tasks of type %s: %s", task_name, text)
    return ok("new rate limit set successfully")


def time_limit(listener: ControlListener, args: dict[str, Any]) -> Any:
    """Celery's: the task's soft and hard limits (seconds, None for none), for the tasks
    that start from now on."""
    task = listener.runtime.app.tasks.get(str(args.get("task_name")))
    if task is None:
        logger.error("time limit change for unknown task %s", args.get("task_name"))
        return nok("unknown task")
    soft, hard = _seconds(args.get("soft")), _seconds(args.get("hard"))
    task.soft_time_limit = soft
    task.time_limit = hard
    _share(listener, task.name, soft_time_limit=soft, time_limit=hard)
    logger.info("new time limits for tasks of type %s: soft=%s hard=%s", task.name, soft, hard)
    return ok("time limits set successfully")


def _share(listener: ControlListener, task_name: str, **settings: Any) -> None:
    """Every process of the worker (prefork's children) applies it before its next fetch."""
    if listener.consumed is not None:
        listener.consumed.set_task(task_name, **settings)


def _seconds(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"a time limit is a number of seconds, got {value!r}") from None
    return seconds if seconds > 0 else None


def add_consumer(listener: ControlListener, args: dict[str, Any]) -> Any:
    """Consume one more queue now, on every process of the worker (declared first, bound to
    its exchange as asked)."""
    name = str(args.get("queue") or "")
    if not name:
        return nok("add_consumer needs the name of the queue to consume")
    app = listener.runtime.app
    consumed = listener.consumed
    if consumed is None:
        return nok("this worker's pool cannot change its queues while it runs")
    if name in consumed.names():
        return ok(f"already consuming from {name!r}")
    queue = _queue_for(listener, name, args)
    failure = _declare_with_retry(app.broker, queue)
    if failure is not None:
        return nok(f"could not declare queue {name!r} on the broker: {failure}; try again")
    consumed.add(queue.name)
    listener.runtime.queues = consumed.names()
    logger.info("started consuming from %s (remote control)", queue.name)
    return ok(f"add consumer {name}")


def _declare_with_retry(broker: Any, queue: Queue, tries: int = 3) -> str | None:
    """Write the queue's bindings; a connection the manager is re-opening after a fork
    (children starting) may fail once, so try again before answering with the error."""
    failure = ""
    for attempt in range(tries):
        try:
            declare_bindings(broker, [queue])
            return None
        except Exception as exc:  # a broker error is the reply, never the control thread's end
            failure = f"{type(exc).__name__}: {exc}"
            time.sleep(0.2 * (attempt + 1))
    return failure


def _queue_for(listener: ControlListener, name: str, args: dict[str, Any]) -> Queue:
    queues = listener.runtime.app.queues
    exchange, routing_key = args.get("exchange"), args.get("routing_key")
    if name in queues.declared or not (exchange or routing_key):
        return queues[name]
    kind = str(args.get("exchange_type") or "direct")
    queue = Queue(name, Exchange(str(exchange or name), kind), str(routing_key or name))
    with queues._lock:
        return queues.declared.get(name) or queues._add(queue)


def cancel_consumer(listener: ControlListener, name: str) -> Any:
    """Stop taking messages from a queue (what is held already still runs)."""
    consumed = listener.consumed
    if consumed is None:
        return nok("this worker's pool cannot change its queues while it runs")
    if not consumed.remove(name):
        return nok(f"not consuming from {name!r}; active queues: {', '.join(consumed.names())}")
    listener.runtime.queues = consumed.names()
    logger.info("stopped consuming from %s (remote control)", name)
    return ok(f"no longer consuming from {name}")


def pool_resize(listener: ControlListener, command: str, n: int) -> Any:
    """pool_grow / pool_shrink: prefork's children; the other pools say why they cannot."""
    runtime = listener.runtime
    pool = listener.pool
    method = getattr(pool, command, None)
    if method is None:
        return nok(
            f"{command} is not supported by the {runtime.pool_name} pool: it "
            f"{_units(runtime.pool_name)}; use -P prefork to grow or shrink a running worker"
        )
    if runtime.autoscale is not None:
        return nok(f"{command} is not supported with autoscale. Adjust autoscale range instead.")
    if n < 1:
        return nok(f"{command} needs n >= 1, got {n}")
    slots = pool.table.count
    now = int(getattr(pool, "_target", runtime.concurrency))
    if command == "pool_grow" and now + n > slots:
        return nok(
            f"pool_grow {n}: this worker has {now} children and room for {slots} (set when it "
            f"started: --concurrency plus room to grow); grow by {slots - now} at most, or "
            "restart it with a larger --concurrency"
        )
    target = method(n)
    logger.info("%s: %d child process(es) from now on", command, target)
    return ok("pool will grow" if command == "pool_grow" else "pool will shrink")


def _units(pool_name: str) -> str:
    return {
        "solo": "runs one task at a time in the worker's own thread",
        "threads": "keeps the threads --concurrency gave it at start",
        "gevent": "keeps the greenlet pool size --concurrency gave it at start",
        "eventlet": "keeps the greenlet pool size --concurrency gave it at start",
        "asyncio": "keeps the event-loop slots --concurrency gave it at start",
    }.get(pool_name, "keeps the size --concurrency gave it at start")


def autoscale(listener: ControlListener, high: Any, low: Any) -> Any:
    """Change --autoscale's MAX,MIN on a running prefork worker started with --autoscale."""
    pool = listener.pool
    scaler = getattr(pool, "autoscaler", None)
    if scaler is None:
        raise ValueError(
            "Autoscale not enabled; start the worker with -P prefork --autoscale=MAX,MIN"
        )
    table_size = pool.table.count
    new_max = scaler.max_procs if high is None else int(high)
    new_min = scaler.min_procs if low is None else int(low)
    new_max, new_min = max(new_max, new_min), min(new_max, new_min)
    if new_max > table_size:
        return nok(
            f"autoscale max {new_max} is more than this worker's {table_size} process slots "
            f"(fixed at start by --autoscale's MAX); restart it with a larger --autoscale"
        )
    scaler.max_procs, scaler.min_procs = new_max, max(0, new_min)
    listener.runtime.autoscale = (scaler.max_procs, scaler.min_procs)
    return ok(f"autoscale now max={scaler.max_procs} min={scaler.min_procs}")


def pool_restart(listener: ControlListener) -> Any:
    raise ValueError(
        "Pool restarts not enabled; celeriac does not reload task modules in a running "
        "worker: restart the worker to load new code"
    )


def heartbeat() -> Any:
    """Send a worker-heartbeat event now (Celery replies nothing)."""
    view = worker_events.current()
    if view is not None:
        view.dispatcher.send("worker-heartbeat", **view._worker_fields())
    return None
