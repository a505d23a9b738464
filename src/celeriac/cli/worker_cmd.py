"""``celeriac worker``: every ``celery worker`` option, parsed here; the Worker does the work.

Options with no meaning for celeriac (gossip, mingle) are accepted, so a command line or a
systemd unit written for Celery starts unchanged, and the banner says once that they do
nothing. The service options (``--detach``, ``--pidfile``, ``--uid``...) live in daemon.py.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from .main import CliState

if TYPE_CHECKING:
    from ..app import Celeriac
    from .daemon import Detached, Pidfile

NO_MEANING = {
    "without_gossip": "--without-gossip: celeriac workers do not gossip; nothing to turn off",
    "without_mingle": "--without-mingle: celeriac workers do not mingle at start-up; "
    "nothing to turn off",
    "without_heartbeat": "--without-heartbeat: celeriac keeps sending worker-heartbeat "
    "events and its liveness beat (how a dead worker's tasks come back)",
    "executable": "--executable: celeriac does not re-execute Python to detach",
}


def _split(value: tuple[str, ...]) -> list[str]:
    return [q.strip() for part in value for q in part.split(",") if q.strip()]


def _queues(value: tuple[str, ...]) -> list[str] | None:
    return _split(value) or None


@dataclass
class ServiceOptions:
    """What turns a worker into a service: resolved and checked before anything forks."""

    nodename: str
    logfile: str | None = None
    pidfile: Pidfile | None = None
    uid: int | None = None
    gid: int | None = None
    umask: int | None = None
    detach: bool = False


def _service_options(
    hostname: str | None,
    logfile: str | None,
    pidfile: str | None,
    uid: str | None,
    gid: str | None,
    umask: int | None,
    detach: bool,
) -> ServiceOptions:
    from .daemon import Pidfile, check_writable_file, resolve_gid, resolve_uid
    from .nodenames import node_format, nodename

    node = nodename(hostname)
    options = ServiceOptions(node, detach=detach)
    options.uid = resolve_uid(uid) if uid else None
    options.gid = resolve_gid(gid) if gid else None
    options.umask = umask
    if logfile:
        options.logfile = os.path.abspath(node_format(logfile, node))
        check_writable_file(options.logfile, "--logfile")
    if pidfile:
        options.pidfile = Pidfile(os.path.abspath(node_format(pidfile, node)))
        options.pidfile.check()
    return options


def _become_service(options: ServiceOptions) -> Detached:
    """Drop privileges, detach and take the pidfile, in that order (as Celery does): the
    log file and the pidfile are then the worker's user's own."""
    from .daemon import Detached, detach, drop_privileges

    if options.umask is not None:
        os.umask(options.umask)
    drop_privileges(options.uid, options.gid)
    detached = detach(options.logfile) if options.detach else Detached(None)
    try:
        if options.pidfile is not None:
            options.pidfile.acquire()
    except Exception as exc:
        detached.fail(str(exc))
        raise
    return detached


def _setup_logging(app: Celeriac, loglevel: str, options: ServiceOptions, color: bool) -> None:
    """Celery's worker logging, to the expanded ``--logfile`` (stderr without one)."""
    from ..worker.logs import setup_worker_logging

    setup_worker_logging(
        app,
        loglevel=loglevel,
        logfile=options.logfile,
        colorize=None if color else False,
        hostname=options.nodename,
    )


def _check_loglevel(loglevel: str) -> str:
    if not isinstance(logging.getLevelName(loglevel.upper()), int):
        raise click.BadParameter(
            f"unknown log level {loglevel!r}; use debug, info, warning, error or critical",
            param_hint="'-l' / '--loglevel'",
        )
    return loglevel


def _purge(app: Celeriac, queues: list[str]) -> None:
    """``--purge``: empty the worker's queues before it starts, and say how many went."""
    removed = app.broker.purge(queues)
    click.echo(f"Discarded {removed} message(s) from {', '.join(queues)}.", err=True)


def _heartbeat_interval(app: Celeriac, interval_s: float) -> None:
    dead_after_s = float(app.conf.worker_dead_after)
    if interval_s * 2 >= dead_after_s:
        raise click.BadParameter(
            f"{interval_s:g} s is too long: other workers count this one dead after "
            f"worker_dead_after={dead_after_s:g} s without a beat; use less than half of it "
            "or raise worker_dead_after",
            param_hint="'--heartbeat-interval'",
        )
    app.conf.worker_heartbeat_interval = interval_s


def _parsed(parse: Callable[[str], Any]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback: *parse* the text, a ConfigurationError becomes a usage error."""
    from ..errors import ConfigurationError

    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return None
        try:
            return parse(value)
        except ConfigurationError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None

    return callback


def _parse_autoscale(value: str) -> tuple[int, int]:
    from ..worker.autoscale import parse_autoscale

    return parse_autoscale(value)


def _parse_umask(value: str) -> int:
    from .daemon import parse_umask

    return parse_umask(value)


def _notes(flags: dict[str, Any], pool_start_method: str | None) -> list[str]:
    notes = [text for key, text in NO_MEANING.items() if flags.get(key)]
    if pool_start_method == "spawn":
        notes.append("--pool-start-method=spawn: celeriac's prefork children are always forked")
    return notes


def _options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Every ``celery worker`` option (and ``--without-banner``), in Celery's order."""
    specs: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
        click.option("-n", "--hostname", default=None, help="Node name, e.g. w1@%h."),
        click.option("-D", "--detach", is_flag=True, help="Run in the background (a daemon)."),
        click.option("-S", "--statedb", default=None, help="File keeping revoked ids."),
        click.option("-l", "--loglevel", default="info", show_default=True,
                     help="debug, info, warning, error, critical."),
        click.option("-O", "--optimization", type=click.Choice(["default", "fair"]),
                     default=None, help="fair: hold no task a free child could not start."),
        click.option("--prefetch-multiplier", type=click.IntRange(min=1), default=None,
                     help="Messages to reserve per slot when every slot is busy."),
        click.option("--disable-prefetch", is_flag=True,
                     help="Fetch a task only when a slot is free (same as -O fair)."),
        click.option("-c", "--concurrency", type=click.IntRange(min=1), default=None,
                     help="Child processes, threads or greenlets."),
        click.option("-P", "--pool", default=None, type=click.Choice(
            ["prefork", "processes", "solo", "threads", "gevent", "eventlet", "asyncio",
             "custom"]), help="Where tasks run (default: prefork)."),
        click.option("-E", "--task-events", "--events", "task_events", is_flag=True,
                     help="Send task events (Flower, celery/celeriac events)."),
        click.option("--time-limit", type=click.FloatRange(min=0, min_open=True),
                     default=None, help="Hard time limit in seconds."),
        click.option("--soft-time-limit", type=click.FloatRange(min=0, min_open=True),
                     default=None, help="Soft time limit in seconds."),
        click.option("--max-tasks-per-child", type=click.IntRange(min=1), default=None,
                     help="Replace a prefork child after this many tasks."),
        click.option("--pool-start-method", type=click.Choice(["fork", "spawn"]),
                     default=None, help="Accepted; prefork children are always forked."),
        click.option("--max-memory-per-child", type=click.IntRange(min=1), default=None,
                     help="Replace a prefork child over this many KiB resident."),
        click.option("--purge", "--discard", "purge", is_flag=True,
                     help="Delete every waiting message in the queues, then start."),
        click.option("-Q", "--queues", multiple=True, help="Comma-separated queues."),
        click.option("-X", "--exclude-queues", multiple=True,
                     help="Comma-separated queues not to consume."),
        click.option("-I", "--include", multiple=True,
                     help="Comma-separated modules to import (task modules)."),
        click.option("--without-gossip", is_flag=True, help="Accepted; no meaning here."),
        click.option("--without-mingle", is_flag=True, help="Accepted; no meaning here."),
        click.option("--without-heartbeat", is_flag=True, help="Accepted; no meaning here."),
        click.option("--heartbeat-interval", type=click.FloatRange(min=0, min_open=True),
                     default=None, help="Seconds between liveness beats."),
        click.option("--autoscale", default=None, metavar="MAX,MIN",
                     callback=_parsed(_parse_autoscale),
                     help="Grow and shrink prefork children with the load."),
        click.option("-B", "--beat", is_flag=True, help="Run beat in this worker too."),
        click.option("-s", "--schedule-filename", "--schedule", "schedule_filename",
                     default=None, help="Beat's schedule file."),
        click.option("--scheduler", default=None, help="Beat's scheduler class."),
        click.option("-f", "--logfile", default=None, help="Log file (%n %i %I %h %d %p)."),
        click.option("--pidfile", default=None, help="PID file (%n %h %d %p)."),
        click.option("--uid", default=None, help="Drop privileges to this user."),
        click.option("--gid", default=None, help="Drop privileges to this group."),
        click.option("--umask", default=None, callback=_parsed(_parse_umask),
                     help="umask (octal) for files the worker creates."),
        click.option("--executable", default=None, help="Accepted; no meaning here."),
        click.option("--workdir", default=None, type=click.Path(file_okay=False),
                     help="Change to this directory first."),
        click.option("--without-banner", is_flag=True, help="Do not print the banner."),
        click.option("--metrics-port", type=click.IntRange(min=0, max=65535), default=None,
                     help="Serve Prometheus /metrics, /healthz and /readyz on this port."),
        click.option("--metrics-address", default="127.0.0.1", show_default=True,
                     help="Address the metrics port listens on."),
        click.option("--metrics-ready-within", type=click.FloatRange(min=0, min_open=True),
                     default=None, help="/readyz fails once a consume loop is stuck this "
                     "long (seconds; default 5)."),
    ]  # fmt: skip
    for spec in reversed(specs):
        func = spec(func)
    return func


@click.command(context_settings={"max_content_width": 100})
@_options
@click.pass_obj
def worker(state: CliState, /, **opts: Any) -> None:
    """Start a worker that consumes QUEUES and runs their tasks.

    \b
    SIGTERM or Ctrl-C: warm shutdown (running tasks finish, the rest go back).
    SIGQUIT or a second Ctrl-C: cold shutdown (stop now).
    """
    from ..errors import CeleriacError

    _check_loglevel(opts["loglevel"])
    pidfile: Pidfile | None = None
    detached: Detached | None = None
    try:
        if opts["workdir"]:
            _chdir(opts["workdir"])
        service = _service_options(
            opts["hostname"],
            opts["logfile"],
            opts["pidfile"],
            opts["uid"],
            opts["gid"],
            opts["umask"],
            opts["detach"],
        )
        detached = _become_service(service)
        pidfile = service.pidfile
        code = _run(state, service, detached, opts)
    except CeleriacError as exc:
        if detached is not None:
            detached.fail(str(exc))
        raise click.ClickException(str(exc)) from None
    except click.ClickException as exc:
        if detached is not None:
            detached.fail(exc.format_message())
        raise
    except Exception as exc:  # the traceback goes to the log; the starter gets one line
        if detached is not None:
            detached.fail(f"{type(exc).__name__}: {exc} (see the log file)")
        raise
    finally:
        if pidfile is not None:
            pidfile.release()
    raise SystemExit(code)


def _statedb(path: str | None, node: str) -> str | None:
    """``--statedb=/var/run/celery/%n.state``: expanded per node, as Celery does."""
    from .nodenames import node_format

    return node_format(path, node) if path else None


def _chdir(path: str) -> None:
    try:
        os.chdir(path)
    except OSError as exc:
        raise click.BadParameter(
            f"cannot change to {path}: {exc.strerror}", param_hint="--workdir"
        ) from None


def _run(state: CliState, service: ServiceOptions, detached: Detached, opts: dict[str, Any]) -> int:
    from ..worker.worker import Worker

    app = state.app()
    _setup_logging(app, opts["loglevel"], service, color=not state.no_color)
    include = _split(opts["include"])
    if include:
        app.conf.include = (*app.conf.include, *include)
    if opts["heartbeat_interval"] is not None:
        _heartbeat_interval(app, opts["heartbeat_interval"])
    fair = opts["optimization"] == "fair" or opts["disable_prefetch"]
    worker = Worker(
        app,
        pool=opts["pool"],
        concurrency=opts["concurrency"],
        queues=_queues(opts["queues"]),
        hostname=service.nodename,
        max_tasks_per_child=opts["max_tasks_per_child"],
        max_memory_per_child=opts["max_memory_per_child"],
        time_limit=opts["time_limit"],
        soft_time_limit=opts["soft_time_limit"],
        prefetch_multiplier=opts["prefetch_multiplier"],
        banner=not (opts["without_banner"] or state.quiet),
        statedb=_statedb(opts["statedb"], service.nodename),
        task_events=opts["task_events"],
        beat=opts["beat"],
        schedule_filename=opts["schedule_filename"],
        scheduler=opts["scheduler"],
        autoscale=opts["autoscale"],
        optimization="fair" if fair else opts["optimization"],
        exclude_queues=_split(opts["exclude_queues"]),
        notes=_notes(opts, opts["pool_start_method"]),
        metrics_port=opts["metrics_port"],
        metrics_address=opts["metrics_address"],
        metrics_ready_within=opts["metrics_ready_within"],
    )
    if opts["purge"]:
        _purge(app, worker.runtime.queues)
    elif service.detach:
        app.broker.ping()  # a wrong broker URL fails `multi start`, not only the log file
    detached.ready()
    sys.stderr.flush()
    return worker.start()
