"""``celeriac call``, ``result`` and ``purge``: thin wrappers over the public API."""

from __future__ import annotations

from typing import Any

import click
import orjson

from .main import CliState


def _json_arg(value: str | None, kind: type, option: str) -> Any:
    if value is None:
        return kind()
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc})", param_hint=option) from None
    if not isinstance(parsed, kind):
        raise click.BadParameter(f"must be a JSON {kind.__name__}", param_hint=option)
    return parsed


@click.command()
@click.argument("name")
@click.option("-a", "--args", "args_json", help="Positional arguments as a JSON list.")
@click.option("-k", "--kwargs", "kwargs_json", help="Keyword arguments as a JSON object.")
@click.option("-Q", "--queue", default=None, help="Queue to send to (default: by routing).")
@click.option("--countdown", type=float, default=None, help="Run no sooner than in N seconds.")
@click.option("--expires", type=float, default=None, help="Drop it if not started in N seconds.")
@click.option("--priority", type=click.IntRange(0, 9), default=None)
@click.option("--wait/--no-wait", default=False, help="Wait for the result and print it.")
@click.option(
    "--timeout", type=float, default=30.0, show_default=True, help="With --wait: how long to wait."
)
@click.pass_obj
def call(
    state: CliState,
    name: str,
    args_json: str | None,
    kwargs_json: str | None,
    queue: str | None,
    countdown: float | None,
    expires: float | None,
    priority: int | None,
    wait: bool,
    timeout: float,
) -> None:
    """Send task NAME and print its id."""
    from ..errors import CeleriacError

    args = _json_arg(args_json, list, "--args")
    kwargs = _json_arg(kwargs_json, dict, "--kwargs")
    app = state.app()
    options: dict[str, Any] = {}
    for key, value in (
        ("queue", queue),
        ("countdown", countdown),
        ("expires", expires),
        ("priority", priority),
    ):
        if value is not None:
            options[key] = value
    try:
        result = app.send_task(name, args, kwargs, **options)
        click.echo(result.id)
        if wait:
            click.echo(
                orjson.dumps(result.get(timeout=timeout, propagate=False), default=repr).decode()
            )
    except CeleriacError as exc:
        raise click.ClickException(str(exc)) from None


@click.command()
@click.argument("task_id")
@click.option(
    "--traceback", "show_traceback", is_flag=True, help="Show the traceback of a failure."
)
@click.option("--place", "show_place", is_flag=True, help="Show where the task ran.")
@click.pass_obj
def result(state: CliState, task_id: str, show_traceback: bool, show_place: bool) -> None:
    """Print the state and result of TASK_ID (PENDING when unknown)."""
    from ..errors import CeleriacError

    app = state.app()
    try:
        res = app.AsyncResult(task_id)
        click.echo(f"state: {res.state}")
        value = res.result
        shown = (
            repr(value)
            if isinstance(value, BaseException)
            else orjson.dumps(value, default=repr).decode()
        )
        click.echo(f"result: {shown}")
        if show_traceback and res.traceback:
            click.echo(res.traceback)
        if show_place and res.place:
            click.echo(f"place: {orjson.dumps(res.place).decode()}")
    except CeleriacError as exc:
        raise click.ClickException(str(exc)) from None


@click.command()
@click.option(
    "-Q",
    "--queues",
    multiple=True,
    help="Comma-separated queues (default: the app's default queue).",
)
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def purge(state: CliState, queues: tuple[str, ...], force: bool) -> None:
    """Delete every waiting message from the queues."""
    from ..errors import CeleriacError

    app = state.app()
    names = [q.strip() for part in queues for q in part.split(",") if q.strip()] or [
        app.conf.task_default_queue
    ]
    try:
        counts = {name: app.broker.queue_length(name) for name in names}
        total = sum(counts.values())
        if total == 0:
            click.echo(f"no messages in {', '.join(names)}")
            return
        if not force:
            click.confirm(
                f"{total} message(s) in {', '.join(f'{q} ({n})' for q, n in counts.items())} "
                f"will be deleted for good. Continue?",
                abort=True,
            )
        removed = app.broker.purge(names)
    except CeleriacError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"purged {removed} message(s) from {', '.join(names)}")
