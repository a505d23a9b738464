"""``celeriac inspect``, ``celeriac control`` and ``celeriac status``: Celery's programs, with
its options (``-d/--destination``, ``-t/--timeout``, ``-j/--json``) and replies.

They speak Celery's remote-control protocol, so they drive Celery workers as well as
celeriac's. ``celeriac inspect tree`` is ours: each worker's process tree, measured by the
worker itself (see worker/control_tree.py).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import click
import orjson

from .main import CliState

EX_UNAVAILABLE = 69  # Celery's exit code when no worker replied


def _flag(value: str) -> bool:
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "y", "on"):
        return True
    if text in ("0", "false", "no", "n", "off"):
        return False
    raise click.BadParameter(f"{value!r} is not a yes/no value; use true or false")


@dataclass(frozen=True)
class Command:
    """What the CLI needs to send a command: its arguments in order (name, type), the
    name the rest of the words go to, the usage and a line of help."""

    help: str
    args: tuple[tuple[str, Callable[[str], Any]], ...] = ()
    variadic: str | None = None
    signature: str = ""
    timeout_s: float = 1.0


INSPECT: dict[str, Command] = {
    "active": Command(
        "List of tasks currently being executed.", (("safe", _flag),), None, "[safe]"
    ),
    "active_queues": Command("List the task queues a worker is currently consuming from."),
    "clock": Command("Get current logical clock value."),
    "conf": Command(
        "List configuration (secrets masked).", (("with_defaults", _flag),), None, "[with_defaults]"
    ),
    "memdump": Command(
        "Dump statistics of previous memsample requests.", (("samples", int),), None, "[n=10]"
    ),
    "memsample": Command("Sample current RSS memory usage."),
    "ping": Command("Ping worker(s).", timeout_s=1.0),
    "query_task": Command("Query for task information by id.", (), "ids", "[id1 [id2 [...]]]"),
    "registered": Command(
        "List of registered tasks.", (), "taskinfoitems", "[attr1 [attr2 [...]]]"
    ),
    "report": Command("Information about Celery installation for bug reports."),
    "reserved": Command("List of currently reserved tasks, not including scheduled/active."),
    "revoked": Command("List of revoked task-ids."),
    "scheduled": Command("List of currently scheduled ETA/countdown tasks."),
    "stats": Command("Request worker statistics/information."),
    "tree": Command(
        "celeriac: each worker's processes, threads, connections and running tasks, measured.",
        timeout_s=3.0,
    ),
}

CONTROL: dict[str, Command] = {
    "add_consumer": Command(
        "Tell worker(s) to consume from task queue by name.",
        (("queue", str), ("exchange", str), ("exchange_type", str), ("routing_key", str)),
        None,
        "<queue> [exchange [type [routing_key]]]",
    ),
    "autoscale": Command(
        "Modify autoscale settings.", (("max", int), ("min", int)), None, "[max [min]]"
    ),
    "cancel_consumer": Command(
        "Tell worker(s) to stop consuming from task queue by name.",
        (("queue", str),),
        None,
        "<queue>",
    ),
    "disable_events": Command("Tell worker(s) to stop sending task-related events."),
    "enable_events": Command("Tell worker(s) to send task-related events."),
    "heartbeat": Command("Tell worker(s) to send event heartbeat immediately."),
    "pool_grow": Command("Grow pool by n processes.", (("n", int),), None, "[N=1]"),
    "pool_restart": Command("Restart execution pool."),
    "pool_shrink": Command("Shrink pool by n processes.", (("n", int),), None, "[N=1]"),
    "rate_limit": Command(
        "Tell worker(s) to modify the rate limit for a task by type.",
        (("task_name", str), ("rate_limit", str)),
        None,
        "<task_name> <rate_limit (e.g., 5/s | 5/m | 5/h)>",
    ),
    "revoke": Command("Revoke task by task id (or list of ids).", (), "task_id", "[id1 [...]]"),
    "revoke_by_stamped_headers": Command(
        "Revoke task by header (or list of headers).", (), "headers", "[key1=value1 [...]]"
    ),
    "shutdown": Command("Shutdown worker(s)."),
    "terminate": Command(
        "Terminate task by task id (or list of ids).",
        (("signal", str),),
        "task_id",
        "<signal> [id1 [...]]",
    ),
    "time_limit": Command(
        "Tell worker(s) to modify the time limit for task by type.",
        (("task_name", str), ("soft", float), ("hard", float)),
        None,
        "<task_name> <soft_secs> [hard_secs]",
    ),
}


def commands_of(kind: str) -> dict[str, Command]:
    """The built-in commands of *kind* and the project's own (``@inspect_command`` ...)
    registered by the modules ``-A`` imported."""
    from ..worker import control_commands

    found = dict(INSPECT if kind == "inspect" else CONTROL)
    for name, info in control_commands.meta.items():
        if info.type == kind and info.visible:
            found.setdefault(
                name,
                Command(
                    info.help,
                    tuple(info.args or ()),
                    info.variadic,
                    info.signature or "",
                    info.default_timeout,
                ),
            )
    return found


def compile_arguments(name: str, command: Command, words: Sequence[str]) -> dict[str, Any]:
    """Celery's rule: the words fill the command's arguments in order, the rest go to its
    variadic argument; too many words for a command without one is a usage error."""
    arguments: dict[str, Any] = {}
    rest = list(words)
    for arg_name, kind in command.args:
        if not rest:
            break
        word = rest.pop(0)
        try:
            arguments[arg_name] = kind(word)
        except (TypeError, ValueError) as exc:
            raise click.UsageError(
                f"{name}: {arg_name} {word!r} is not valid ({exc}); usage: {name} "
                f"{command.signature}"
            ) from None
    if command.variadic:
        arguments[command.variadic] = rest
    elif rest:
        raise click.UsageError(f"Command {name!r} takes arguments: {command.signature or 'none'}")
    return arguments


def _pick(kind: str, name: str) -> Command:
    choices = commands_of(kind)
    if name not in choices:
        raise click.UsageError(
            f"Command {name} not recognized. Available {kind} commands: {', '.join(choices)}"
        )
    return choices[name]


def _list_commands(kind: str) -> Callable[[click.Context, click.Parameter, bool], None]:
    def show(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if not value or ctx.resilient_parsing:
            return
        _load_app(ctx)
        formatter = click.HelpFormatter()
        with formatter.section(f"{kind.capitalize()} Commands"):
            formatter.write_dl(
                [
                    (f"{name} {c.signature}".strip(), c.help)
                    for name, c in sorted(commands_of(kind).items())
                ]
            )
        click.echo(formatter.getvalue(), nl=False)
        ctx.exit()

    return show


def _load_app(ctx: click.Context) -> Any:
    state = ctx.find_object(CliState)
    if state is None:
        raise click.UsageError("run this as `celeriac [-A app] [-b URL] inspect ...`")
    return state.app()


def pretty(answer: Any) -> tuple[str, str]:
    """Celery's rendering of one reply: (status, body)."""
    if isinstance(answer, list):
        return "OK", "\n".join(
            f"* {item if isinstance(item, str) else _json_text(item)}" for item in answer
        ) or "- empty -"
    if isinstance(answer, dict) and set(answer) == {"ok"}:
        return "OK", str(answer["ok"])
    if isinstance(answer, dict) and "error" in answer:
        return "ERROR", str(answer["error"])
    if isinstance(answer, str):
        return "OK", answer
    return "OK", _json_text(answer)


def _json_text(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2, default=repr).decode()


def say_reply(body: dict[str, Any], show_reply: bool = True) -> None:
    for node, answer in body.items():
        status, text = pretty(answer)
        colour = "red" if status == "ERROR" else "green"
        click.echo(
            click.style("-> ", fg="cyan")
            + click.style(f"{node}: ", fg="cyan", bold=True)
            + click.style(status, fg=colour)
        )
        if show_reply and text:
            click.echo("\n".join(f"    {line}" for line in text.splitlines()))


def _done(replies: Any, as_json: bool, quiet: bool) -> None:
    if not replies:
        click.echo("Error: No nodes replied within time constraint", err=True)
        sys.exit(EX_UNAVAILABLE)
    merged: dict[str, Any] = {}
    for item in replies if isinstance(replies, list) else [replies]:
        merged.update(item)
    if as_json:
        click.echo(orjson.dumps(merged, default=repr).decode())
        return
    if not quiet:
        count = len(merged)
        click.echo(f"\n{count} {'node' if count == 1 else 'nodes'} online.")


def _remote_options(fun: Callable[..., Any]) -> Callable[..., Any]:
    fun = click.option("-j", "--json", "as_json", is_flag=True, help="Use json as output format.")(
        fun
    )
    fun = click.option(
        "-d",
        "--destination",
        default=None,
        help="Comma separated list of destination node names.",
    )(fun)
    fun = click.option(
        "-t", "--timeout", type=float, default=None, help="Timeout in seconds waiting for reply."
    )(fun)
    return fun


def _remote_command(kind: str) -> Callable[[Callable[..., Any]], click.Command]:
    """``celeriac <kind> COMMAND [ARGS...]`` with ``--list`` and the -t/-d/-j options; the
    function gets the click context first."""

    def make(fun: Callable[..., Any]) -> click.Command:
        fun = _remote_options(click.pass_context(fun))
        fun = click.option(
            "--list",
            is_flag=True,
            expose_value=False,
            is_eager=True,
            callback=_list_commands(kind),
            help=f"List available {kind} commands and exit.",
        )(fun)
        fun = click.argument("command")(fun)
        return click.command(context_settings={"allow_extra_args": True})(fun)

    return make


def _prepare(
    ctx: click.Context, kind: str, command: str, timeout: float | None
) -> tuple[Any, dict[str, Any], float]:
    """The app, the command's arguments from the extra words, and how long to wait (-t, else
    the command's own default)."""
    app = _load_app(ctx)
    meta = _pick(kind, command)
    arguments = compile_arguments(command, meta, ctx.args)
    return app, arguments, timeout if timeout is not None else meta.timeout_s


def _destination(value: str | None) -> list[str] | None:
    return [name.strip() for name in value.split(",") if name.strip()] if value else None


def _broadcast(
    app: Any, name: str, arguments: dict[str, Any], timeout: float, destination: Any, show: bool
) -> Any:
    from ..errors import CeleriacError

    try:
        return app.control.broadcast(
            name,
            arguments,
            destination=destination,
            reply=True,
            timeout=timeout,
            callback=(lambda body: say_reply(body)) if show else None,
        )
    except CeleriacError as exc:
        raise click.ClickException(f"{name}: {exc}") from None
    except OSError as exc:
        raise click.ClickException(
            f"{name}: cannot reach the broker ({exc}); check -b/--broker or broker_url"
        ) from None


@_remote_command("inspect")
def inspect(
    ctx: click.Context,
    command: str,
    timeout: float | None,
    destination: str | None,
    as_json: bool,
) -> None:
    """Inspect the workers by sending them the COMMAND inspect command.

    \b
    celeriac -A proj inspect stats
    celeriac -A proj inspect active -d w1@host --json
    celeriac -A proj inspect tree          (each worker's measured process tree)
    """
    app, arguments, wait_s = _prepare(ctx, "inspect", command, timeout)
    if command == "tree":
        from .tree_view import show_tree

        replies = _broadcast(app, command, arguments, wait_s, _destination(destination), False)
        if not replies:
            _done(replies, as_json, False)
        state = ctx.find_object(CliState)
        show_tree(replies, as_json, no_color=bool(state and state.no_color))
        return
    show = not as_json
    replies = _broadcast(app, command, arguments, wait_s, _destination(destination), show)
    _done(replies, as_json, _quiet(ctx))


@_remote_command("control")
def control(
    ctx: click.Context,
    command: str,
    timeout: float | None,
    destination: str | None,
    as_json: bool,
) -> None:
    """Send the COMMAND control command to the workers.

    \b
    celeriac -A proj control add_consumer images
    celeriac -A proj control rate_limit proj.tasks.add 10/m
    celeriac -A proj control pool_grow 2 -d w1@host
    """
    app, arguments, wait_s = _prepare(ctx, "control", command, timeout)
    replies = _broadcast(app, command, arguments, wait_s, _destination(destination), not as_json)
    _done(replies, as_json, _quiet(ctx))


@click.command()
@_remote_options
@click.option(
    "--exit-code",
    is_flag=True,
    help="Exit 1 unless every worker (each -d node) answers and is ready, as its /readyz.",
)
@click.pass_context
def status(
    ctx: click.Context,
    timeout: float | None,
    destination: str | None,
    as_json: bool,
    exit_code: bool,
) -> None:
    """Show the list of workers that are online."""
    app = _load_app(ctx)
    wait_s = timeout if timeout is not None else 1.0
    replies = _broadcast(app, "ping", {}, wait_s, _destination(destination), False)
    if replies and not as_json:
        for body in replies:
            say_reply(body, show_reply=False)
    _done(replies, as_json, _quiet(ctx))
    if exit_code:
        from ..metrics.status_check import not_ready

        problems = not_ready(
            replies,
            _broadcast(app, "readiness", {}, wait_s, _destination(destination), False),
            _destination(destination),
        )
        for problem in problems:
            click.echo(f"Error: {problem}", err=True)
        if problems:
            sys.exit(1)


def _quiet(ctx: click.Context) -> bool:
    state = ctx.find_object(CliState)
    return bool(state and state.quiet)
