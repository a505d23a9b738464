"""``celeriac beat``: run the scheduler; ``celeriac beat list|add|remove|pause|resume``:
change the schedule kept in the broker while beats run."""

from __future__ import annotations

import signal
import threading
from datetime import datetime
from types import FrameType
from typing import TYPE_CHECKING, Any

import click
import orjson

from .main import CliState, setup_logging

if TYPE_CHECKING:
    from ..beat import Beat, PeriodicTasks


@click.group(invoke_without_command=True)
@click.option("-l", "--loglevel", default="info", show_default=True, help="Logging level.")
@click.option(
    "-s",
    "--schedule",
    "schedule_filename",
    default=None,
    help="Accepted for Celery's command lines; beat keeps its state in the broker.",
)
@click.option("-S", "--scheduler", default=None, help="Accepted; celeriac has one scheduler.")
@click.option("-f", "--logfile", default=None, help="Log to this file instead of stderr.")
@click.option("--pidfile", default=None, help="Write the beat's pid here; refuse if it is held.")
@click.option(
    "--max-interval",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Most seconds between two looks at the schedule (beat_max_loop_interval).",
)
@click.pass_context
def beat(
    ctx: click.Context,
    loglevel: str,
    schedule_filename: str | None,
    scheduler: str | None,
    max_interval: float | None,
    logfile: str | None,
    pidfile: str | None,
) -> None:
    """Send periodic tasks. Run as many as you like: each run is sent once.

    \b
    celeriac -A proj beat
    celeriac -A proj beat list
    celeriac -A proj beat add nightly proj.tasks.cleanup --crontab "0 3 * * *"
    celeriac -A proj beat pause nightly
    """
    if ctx.invoked_subcommand is not None:
        return
    from ..beat import Beat
    from ..errors import CeleriacError
    from .daemon import Pidfile

    setup_logging(loglevel)
    if logfile:
        _log_to_file(logfile)
    state: CliState = ctx.obj
    app = state.app()
    if scheduler:
        click.echo(f"note: --scheduler {scheduler} accepted; celeriac's beat is used", err=True)
    held = Pidfile(pidfile) if pidfile else None
    try:
        app.import_task_modules()
        service = Beat(app, max_interval_s=max_interval)
        if held is not None:
            held.check()
            held.acquire()
    except CeleriacError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        _run(service)
    finally:
        service.close()
        app.close()
        if held is not None:
            held.release()


def _log_to_file(logfile: str) -> None:
    import logging

    from .main import LOG_FORMAT

    try:
        handler = logging.FileHandler(logfile)
    except OSError as exc:
        raise click.BadParameter(
            f"cannot write {logfile}: {exc.strerror}", param_hint="'--logfile'"
        ) from None
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)


def _run(service: Beat) -> None:
    from ..signals import beat_init

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if beat_init.receivers:
        beat_init.send(sender=service)
    service.run(stop)


def _manager(ctx: click.Context) -> PeriodicTasks:
    from ..beat import PeriodicTasks
    from ..errors import CeleriacError

    state: CliState = ctx.obj
    try:
        return PeriodicTasks(state.app())
    except CeleriacError as exc:
        raise click.ClickException(str(exc)) from None


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment is not None else "-"


@beat.command(name="list")
@click.pass_context
def list_(ctx: click.Context) -> None:
    """Show every periodic task: schedule, where it is defined, state, last and next run."""
    from ..errors import CeleriacError

    try:
        found = _manager(ctx).list()
    except CeleriacError as exc:
        raise click.ClickException(str(exc)) from None
    if not found:
        click.echo("no periodic tasks (set beat_schedule, or use `celeriac beat add`)")
    for item in found:
        state = "paused" if item.is_paused else "active"
        click.echo(
            f"{item.name}  {item.task}  {item.schedule}  [{item.source}, {state}]  "
            f"last={_when(item.last_run_at)}  next={_when(item.next_run_at)}"
        )


def _json(option: str, text: str | None, kind: type) -> Any:
    if text is None:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON ({exc}): {text!r}", param_hint=option) from None
    if not isinstance(value, kind):
        raise click.BadParameter(
            f"must be a JSON {'list' if kind is list else 'object'}, got {text!r}",
            param_hint=option,
        )
    return value


def _schedule(every: float | None, cron: str | None, sun: str | None) -> Any:
    from ..schedules import crontab, solar

    given = [value for value in (every, cron, sun) if value is not None]
    if len(given) != 1:
        raise click.UsageError(
            "give exactly one of --every SECONDS, --crontab 'M H DoM MoY DoW' or "
            "--solar EVENT:LAT:LON"
        )
    if every is not None:
        return every
    if cron is not None:
        return crontab.from_string(cron)
    event, _, place = str(sun).partition(":")
    lat, _, lon = place.partition(":")
    try:
        return solar(event, float(lat), float(lon))
    except ValueError as exc:
        if "solar" in str(exc):
            raise
        raise click.BadParameter(
            f"{sun!r} is not EVENT:LAT:LON, e.g. sunset:59.91:10.75", param_hint="'--solar'"
        ) from None


@beat.command()
@click.argument("name")
@click.argument("task")
@click.option("--every", type=click.FloatRange(min=0, min_open=True), help="Seconds between runs.")
@click.option("--crontab", "cron", help="A cron line: 'minute hour day_of_month month dow'.")
@click.option("--solar", "sun", help="EVENT:LAT:LON, e.g. sunset:59.91:10.75.")
@click.option("--args", "args_json", help="Positional arguments as a JSON list.")
@click.option("--kwargs", "kwargs_json", help="Keyword arguments as a JSON object.")
@click.option("--options", "options_json", help="Send options as a JSON object.")
@click.option("-Q", "--queue", default=None, help="Send to this queue.")
@click.pass_context
def add(
    ctx: click.Context,
    name: str,
    task: str,
    every: float | None,
    cron: str | None,
    sun: str | None,
    args_json: str | None,
    kwargs_json: str | None,
    options_json: str | None,
    queue: str | None,
) -> None:
    """Add (or replace) periodic task NAME sending TASK; every beat picks it up."""
    from ..errors import CeleriacError

    options = _json("'--options'", options_json, dict) or {}
    if queue:
        options["queue"] = queue
    try:
        _manager(ctx).add(
            name,
            task,
            _schedule(every, cron, sun),
            args=_json("'--args'", args_json, list) or (),
            kwargs=_json("'--kwargs'", kwargs_json, dict),
            options=options,
        )
    except CeleriacError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"added {name}")


def _change(ctx: click.Context, name: str, action: str) -> None:
    from ..errors import CeleriacError

    manager = _manager(ctx)
    try:
        getattr(manager, action)(name)
    except CeleriacError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{action.rstrip('e')}ed {name}")


@beat.command()
@click.argument("name")
@click.pass_context
def remove(ctx: click.Context, name: str) -> None:
    """Remove run-time periodic task NAME."""
    _change(ctx, name, "remove")


@beat.command()
@click.argument("name")
@click.pass_context
def pause(ctx: click.Context, name: str) -> None:
    """Stop sending NAME until resumed (its missed runs are not caught up)."""
    _change(ctx, name, "pause")


@beat.command()
@click.argument("name")
@click.pass_context
def resume(ctx: click.Context, name: str) -> None:
    """Send NAME again from its next run."""
    _change(ctx, name, "resume")
