"""``celeriac call``, ``result`` and ``purge``: thin wrappers over the public API."""

from __future__ import annotations

from datetime import datetime, timezone
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


def _when(value: str | None, option: str, seconds: bool) -> float | datetime | None:
    """An ISO 8601 time (a naive one is taken as UTC), or with *seconds* a number of
    seconds from now."""
    if value is None:
        return None
    if seconds:
        try:
            return float(value)
        except ValueError:
            pass
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        kinds = "a number of seconds or an ISO 8601 time" if seconds else "an ISO 8601 time"
        raise click.BadParameter(
            f"{value!r} is not {kinds}, e.g. 2030-01-31T12:00:00+00:00", param_hint=option
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@click.command()
@click.argument("name")
@click.option("-a", "--args", "args_json", help="Positional arguments as a JSON list.")
@click.option("-k", "--kwargs", "kwargs_json", help="Keyword arguments as a JSON object.")
@click.option("-Q", "--queue", default=None, help="Queue to send to (default: by routing).")
@click.option("--exchange", default=None, help="Exchange to send to (default: by routing).")
@click.option("--routing-key", default=None, help="Routing key (default: by routing).")
@click.option("--countdown", type=float, default=None, help="Run no sooner than in N seconds.")
@click.option(
    "--eta", default=None, help="Run no sooner than this ISO 8601 time (2030-01-31T12:00:00+00:00)."
)
@click.option(
    "--expires",
    default=None,
    help="Drop it if not started by then: seconds from now, or an ISO 8601 time.",
)
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
    exchange: str | None,
    routing_key: str | None,
    countdown: float | None,
    eta: str | None,
    expires: str | None,
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
        ("exchange", exchange),
        ("routing_key", routing_key),
        ("countdown", countdown),
        ("eta", _when(eta, "--eta", seconds=False)),
        ("expires", _when(expires, "--expires", seconds=True)),
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
    help="Comma-separated queues (default: every queue the app knows).",
)
@click.option(
    "-X", "--exclude-queues", multiple=True, help="Comma-separated queues to leave alone."
)
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def purge(
    state: CliState, queues: tuple[str, ...], exclude_queues: tuple[str, ...], force: bool
) -> None:
    """Delete every waiting message from the queues."""
    from ..errors import CeleriacError

    app = state.app()
    excluded = set(_names(exclude_queues))
    names = [q for q in (_names(queues) or _known_queues(app)) if q not in excluded]
    if not names:
        raise click.UsageError("-X/--exclude-queues leaves no queue to purge; check -Q and -X")
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


def _names(value: tuple[str, ...]) -> list[str]:
    return [q.strip() for part in value for q in part.split(",") if q.strip()]


def _known_queues(app: Any) -> list[str]:
    """The default queue and those declared in ``task_queues`` (Queue objects, kombu's
    too, names or a mapping), as Celery's purge takes them."""
    names = [app.conf.task_default_queue]
    declared = app.conf.task_queues or ()
    if isinstance(declared, dict):
        declared = list(declared)
    for queue in declared:
        name = getattr(queue, "name", queue)
        if isinstance(name, str) and name not in names:
            names.append(name)
    return names
