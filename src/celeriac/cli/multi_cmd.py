"""``celeriac multi``: start and stop several detached workers (being written)."""

from __future__ import annotations

import click


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def multi(args: tuple[str, ...]) -> None:
    """Start, stop or restart several workers."""
    raise click.ClickException("celeriac multi is not ready yet")
