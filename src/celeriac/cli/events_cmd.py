"""``celeriac events``: watch a cluster's events, from celeriac or Celery workers.

Without options, a live view (rich): the workers with their pool, load and counts, the
tasks per state and the throughput. ``--dump`` prints each event as it arrives, one line
each (``--json``: the event itself as one JSON line). ``--timeout`` and ``--limit`` end it.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TextIO

import click
import orjson
from redis.exceptions import RedisError

from ..errors import CeleriacError
from ..events.monitor import STATE_ORDER, ClusterMonitor
from ..events.receiver import EventReceiver
from ..urls import safe_url
from .main import CliState

if TYPE_CHECKING:
    from rich.console import RenderableType

Event = dict[str, Any]

_HUMAN = {"worker-online": "started", "worker-offline": "shutdown", "worker-heartbeat": "heartbeat"}
_TASK_HEAD = ("uuid", "name", "args", "kwargs")


def dump_line(event: Event, names: dict[str, str]) -> str:
    """One line for an event: ``host [time] kind: task fields``."""
    event = dict(event)
    event.pop("local_received", None)
    stamp = datetime.fromtimestamp(float(event.pop("timestamp", time.time())), timezone.utc)
    kind = str(event.pop("type", "?"))
    hostname = event.pop("hostname", "?")
    task = ""
    if kind.startswith("task-"):
        uuid = str(event.pop("uuid", ""))
        if "name" in event:
            names[uuid] = str(event["name"])
        head = {key: event.pop(key) for key in _TASK_HEAD[1:] if key in event}
        task = f"{names.get(uuid, '')}[{uuid}]"
        if "args" in head or "kwargs" in head:
            task += f" args={head.get('args')} kwargs={head.get('kwargs')}"
        if len(names) > 4096:
            names.pop(next(iter(names)))
    fields = ", ".join(f"{key}={event[key]}" for key in sorted(event))
    text = _HUMAN.get(kind, kind.replace("-", " "))
    return f"{hostname} [{stamp:%Y-%m-%d %H:%M:%S.%f}] {text}: {task} {fields}".rstrip()


def _dump(
    receiver: EventReceiver, out: TextIO, as_json: bool, timeout: float | None, limit: int | None
) -> int:
    names: dict[str, str] = {}
    count = 0
    listening = False
    for event in receiver.events(timeout):
        if not listening:  # said once the subscription is in place
            listening = True
            out.write("-> celeriac events: capturing...\n")
            out.flush()
        if event is None:
            continue
        out.write((orjson.dumps(event).decode() if as_json else dump_line(event, names)) + "\n")
        out.flush()
        count += 1
        if limit is not None and count >= limit:
            break
    return count


def render(monitor: ClusterMonitor, now: float | None = None) -> RenderableType:
    """The live view: workers, tasks per state, throughput."""
    from rich.console import Group
    from rich.table import Table

    now = time.time() if now is None else now
    workers = Table(title="workers", expand=True)
    for column in ("worker", "status", "pool", "pid", "active", "processed", "load"):
        workers.add_column(column)
    for worker in sorted(monitor.workers.values(), key=lambda w: w.hostname):
        alive = worker.alive(now)
        workers.add_row(
            worker.hostname,
            "[green]online[/]" if alive else "[red]offline[/]",
            worker.pool or "-",
            str(worker.pid or "-"),
            str(worker.active),
            str(worker.processed),
            " ".join(f"{value:.2f}" for value in worker.loadavg) or "-",
        )
    counts = monitor.states()
    states = Table(title="tasks", expand=True)
    for state in STATE_ORDER:
        states.add_column(state, justify="right")
    states.add_row(*(str(counts[state]) for state in STATE_ORDER))
    footer = (
        f"throughput: {monitor.throughput(now):.1f} tasks/s (last 10 s)   "
        f"events: {monitor.event_count}   (Ctrl-C to quit)"
    )
    return Group(workers, states, footer)


def _live(
    receiver: EventReceiver, refresh_s: float, timeout: float | None, limit: int | None
) -> int:
    from rich.live import Live

    monitor = ClusterMonitor()
    next_draw = 0.0
    with Live(render(monitor), auto_refresh=False, transient=False) as live:
        for event in receiver.events(timeout):
            if event is not None:
                monitor.feed(event)
            now = time.time()
            if now >= next_draw:
                live.update(render(monitor, now), refresh=True)
                next_draw = now + refresh_s
            if limit is not None and monitor.event_count >= limit:
                break
        live.update(render(monitor), refresh=True)
    return monitor.event_count


@click.command()
@click.option("-d", "--dump", is_flag=True, help="Print each event as it arrives.")
@click.option("--json", "as_json", is_flag=True, help="With --dump: each event as a JSON line.")
@click.option(
    "-F",
    "--frequency",
    "--freq",
    "frequency",
    type=float,
    default=1.0,
    show_default=True,
    help="Seconds between redraws of the live view.",
)
@click.option("-c", "--camera", default=None, help="Celery's snapshot camera (not supported).")
@click.option("-r", "--maxrate", default=None, help="Accepted with --camera only.")
@click.option("-l", "--loglevel", default="WARNING", help="Logging level.")
@click.option("--timeout", type=float, default=None, help="Stop after this many seconds.")
@click.option("--limit", type=int, default=None, help="Stop after this many events.")
@click.pass_obj
def events(
    state: CliState,
    dump: bool,
    as_json: bool,
    frequency: float,
    camera: str | None,
    maxrate: str | None,
    loglevel: str,
    timeout: float | None,
    limit: int | None,
) -> None:
    """Watch the cluster's events (Celery's): a live view, or --dump."""
    if camera:
        raise click.UsageError(
            f"--camera {camera}: celeriac has no snapshot cameras; use --dump --json and "
            "store what you need, or run Celery's `celery events --camera` (it reads "
            "celeriac's events too)"
        )
    if frequency <= 0:
        raise click.BadParameter("must be a number of seconds > 0", param_hint="--frequency")
    app = state.app()
    receiver = EventReceiver(app)
    try:
        if dump or as_json:
            _dump(receiver, sys.stdout, as_json, timeout, limit)
        else:
            _live(receiver, frequency, timeout, limit)
    except KeyboardInterrupt:
        pass
    except (RedisError, OSError, CeleriacError) as exc:
        raise click.ClickException(
            f"cannot read events from {safe_url(app.broker_url)}: {exc}; check that the "
            "broker is running and that -b/--broker or broker_url names it"
        ) from exc
