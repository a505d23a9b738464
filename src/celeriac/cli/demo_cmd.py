"""``celeriac demo``: the seed's process trees and comparison table, measured live."""

from __future__ import annotations

import click

from .main import CliState

POOLS = ("prefork", "solo", "threads", "gevent", "eventlet", "asyncio", "all")


@click.command()
@click.option(
    "-P",
    "--pool",
    type=click.Choice(POOLS),
    default="all",
    show_default=True,
    help="Which pool to show; all runs them one after another.",
)
@click.option(
    "-b",
    "--broker",
    "broker_url",
    default=None,
    help="Broker and result backend URL (default: a temporary SQLite file for this run). "
    "Use a Redis database no other worker consumes: the demo sends to basic, advanced "
    "and realworld.",
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Slots per worker (default: the seed's: prefork 4, gevent/eventlet 100, ...).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the measured facts as JSON.")
@click.pass_obj
def demo(
    state: CliState, pool: str, broker_url: str | None, concurrency: int | None, as_json: bool
) -> None:
    """Start a real worker per pool, run the seed's tasks, and show where they ran.

    \b
    Prints each pool's process tree as the seed draws it (manager, children, threads,
    greenlets, and each one's connections), then the seed's comparison table filled with
    measured values. Exits 1 if a measurement contradicts the seed.
    """
    from ..demo.main import main
    from ..errors import CeleriacError

    try:
        code = main(pool, broker_url or state.broker, concurrency, as_json)
    except CeleriacError as exc:
        raise click.ClickException(str(exc)) from None
    raise SystemExit(code)
