"""``celeriac dead list|show|requeue|purge``: the dead-letter list of a queue, over the
broker's own methods."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import click
import orjson

from .main import CliState

SHOW_ALL = 1_000_000  # how far `show` looks for a task id


def _queue_option(function: Any) -> Any:
    return click.option(
        "-Q",
        "--queue",
        "queue",
        default=None,
        metavar="NAME",
        help="The queue whose dead letters to manage (default: the app's default queue).",
    )(function)


def _queue(state: CliState, queue: str | None) -> str:
    return queue or str(state.app().conf.task_default_queue)


def _when(seconds: float) -> str:
    if seconds <= 0:
        return "unknown time"
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


def _label(letter: Any) -> str:
    return f"{letter.task_name or '(no task name)'}[{letter.task_id or 'no id'}]"


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


@click.group()
def dead() -> None:
    """Messages a worker could not run: list, show, requeue or purge them."""


@dead.command(name="list")
@_queue_option
@click.option(
    "--limit", type=click.IntRange(min=1), default=100, show_default=True, help="Show at most N."
)
@click.pass_obj
def list_(state: CliState, queue: str | None, limit: int) -> None:
    """Count the dead letters of a queue and show the newest, with their reasons."""
    from ..errors import CeleriacError

    name = _queue(state, queue)
    try:
        broker = state.app().broker
        total = broker.dead_letter_count(name)
        letters = broker.dead_letters(name, limit)
    except CeleriacError as exc:
        raise _fail(exc) from None
    click.echo(f"{name}: {total} dead letter(s)")
    for index, letter in enumerate(letters, start=1):
        click.echo(f"{index:>4}  {_when(letter.time)}  {_label(letter)}  {letter.reason}")
    if total > len(letters):
        click.echo(f"... and {total - len(letters)} older (use --limit to see more)")


@dead.command()
@_queue_option
@click.argument("task_id", required=False)
@click.option(
    "--index",
    type=click.IntRange(min=1),
    default=None,
    help="Show the N-th dead letter as numbered by `dead list` (for one without a task id).",
)
@click.pass_obj
def show(state: CliState, queue: str | None, task_id: str | None, index: int | None) -> None:
    """Print one dead letter in full: its reason, time and the whole message."""
    from ..errors import CeleriacError

    if (task_id is None) == (index is None):
        raise click.UsageError("give either a TASK_ID or --index N")
    name = _queue(state, queue)
    try:
        letters = state.app().broker.dead_letters(name, index or SHOW_ALL)
    except CeleriacError as exc:
        raise _fail(exc) from None
    if index is not None:
        found = letters[index - 1] if index <= len(letters) else None
        wanted = f"number {index}"
    else:
        found = next((d for d in letters if d.task_id == task_id), None)
        wanted = f"with task id {task_id}"
    if found is None:
        raise click.ClickException(
            f"no dead letter {wanted} in {name!r}; `celeriac dead list -Q {name}` shows them"
        )
    click.echo(f"queue:   {found.queue}")
    click.echo(f"task:    {_label(found)}")
    click.echo(f"reason:  {found.reason}")
    click.echo(f"time:    {_when(found.time)}")
    click.echo("message:")
    click.echo(_pretty(found.raw))


def _pretty(raw: bytes) -> str:
    """The envelope indented, with its arguments decoded when it is a readable task."""
    from ..errors import InvalidMessage
    from ..protocol import parse_envelope

    try:
        envelope = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")
    text = orjson.dumps(envelope, option=orjson.OPT_INDENT_2).decode()
    try:
        message = parse_envelope(raw)
    except InvalidMessage:
        return text
    decoded = {"args": message.args, "kwargs": message.kwargs, "embed": message.embed}
    body = orjson.dumps(decoded, option=orjson.OPT_INDENT_2, default=repr).decode()
    return f"{text}\nbody (decoded):\n{body}"


@dead.command()
@_queue_option
@click.option("--id", "task_id", default=None, help="Only the dead letters of this task id.")
@click.pass_obj
def requeue(state: CliState, queue: str | None, task_id: str | None) -> None:
    """Put dead letters back at the end of their queue (all, or one task's)."""
    from ..errors import CeleriacError

    name = _queue(state, queue)
    try:
        moved = state.app().broker.requeue_dead(name, task_id)
    except CeleriacError as exc:
        raise _fail(exc) from None
    if task_id is not None and moved == 0:
        raise click.ClickException(
            f"no dead letter with task id {task_id} in {name!r}; "
            f"`celeriac dead list -Q {name}` shows them"
        )
    click.echo(f"requeued {moved} message(s) to {name}")


@dead.command()
@_queue_option
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def purge(state: CliState, queue: str | None, force: bool) -> None:
    """Delete the dead letters of a queue for good."""
    from ..errors import CeleriacError

    name = _queue(state, queue)
    try:
        broker = state.app().broker
        total = broker.dead_letter_count(name)
        if total == 0:
            click.echo(f"no dead letters in {name}")
            return
        if not force:
            click.confirm(
                f"{total} dead letter(s) in {name} will be deleted for good. Continue?",
                abort=True,
            )
        removed = broker.purge_dead(name)
    except CeleriacError as exc:
        raise _fail(exc) from None
    click.echo(f"purged {removed} dead letter(s) from {name}")
