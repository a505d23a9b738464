"""``celeriac dashboard``: the live web dashboard (Starlette on uvicorn)."""

from __future__ import annotations

import os

import click

from ..errors import ConfigurationError
from .main import CliState


@click.command()
@click.option("--port", type=click.IntRange(0, 65535), default=5555, show_default=True)
@click.option(
    "--address",
    default="127.0.0.1",
    show_default=True,
    help="Where to listen. Anything but loopback needs --auth or CELERIAC_DASHBOARD_TOKEN.",
)
@click.option(
    "--auth",
    "basic",
    default=None,
    metavar="USER:PASSWORD",
    envvar="CELERIAC_DASHBOARD_AUTH",
    help="HTTP basic auth for every page (or set CELERIAC_DASHBOARD_AUTH).",
)
@click.option(
    "--max-tasks",
    type=click.IntRange(min=1),
    default=None,
    help="Tasks kept in the history (default: the dashboard_max_tasks setting, 10000).",
)
@click.pass_obj
def dashboard(
    state: CliState, port: int, address: str, basic: str | None, max_tasks: int | None
) -> None:
    """Serve the live dashboard: cluster, queues, tasks, actions and /metrics."""
    try:
        import uvicorn

        from ..dashboard.app import create_app
        from ..dashboard.security import TOKEN_ENV, Auth, check_address
        from ..dashboard.state import DashboardState
    except ImportError as exc:
        raise click.ClickException(
            f"the dashboard needs its extra ({exc.name} is missing): "
            "pip install 'celeriac[dashboard]'"
        ) from None
    try:
        auth = Auth.parse(basic, os.environ.get(TOKEN_ENV))
        check_address(address, auth)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None
    app = state.app()
    web = create_app(DashboardState(app, max_tasks), auth)
    host = f"[{address}]" if ":" in address else address
    if not state.quiet:
        click.echo(f"celeriac dashboard on http://{host}:{port}/ (Ctrl-C stops it)")
    # the live streams never end by themselves: a stop waits for them at most a second
    uvicorn.run(
        web,
        host=address,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
