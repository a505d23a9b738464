"""``celeriac worker``: Celery's flags, parsed here; the Worker does the work."""

from __future__ import annotations

import click

from .main import CliState, setup_logging


def _queues(value: tuple[str, ...]) -> list[str] | None:
    names = [q.strip() for part in value for q in part.split(",") if q.strip()]
    return names or None


@click.command()
@click.option(
    "-P",
    "--pool",
    type=click.Choice(["prefork", "processes", "solo", "threads", "gevent", "eventlet", "asyncio"]),
    default=None,
    help="Where tasks run (default: prefork).",
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Child processes, threads or greenlets (default: CPU count for prefork).",
)
@click.option("-Q", "--queues", multiple=True, help="Comma-separated queues to consume.")
@click.option("-n", "--hostname", default=None, help="Node name, e.g. worker1@%h.")
@click.option(
    "-l", "--loglevel", default="info", show_default=True, help="debug, info, warning, error."
)
@click.option(
    "--max-tasks-per-child",
    type=click.IntRange(min=1),
    default=None,
    help="Replace a prefork child after this many tasks.",
)
@click.option(
    "--max-memory-per-child",
    type=click.IntRange(min=1),
    default=None,
    help="Replace a prefork child whose resident memory passes this many KiB.",
)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Hard time limit in seconds: the task's process is killed and replaced.",
)
@click.option(
    "--soft-time-limit",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Soft time limit in seconds: SoftTimeLimitExceeded is raised in the task.",
)
@click.option(
    "--prefetch-multiplier",
    type=click.IntRange(min=1),
    default=None,
    help="Messages to reserve per slot when every slot is busy.",
)
@click.option(
    "-S", "--statedb", default=None, help="File that keeps revoked task ids across worker restarts."
)
@click.option("--without-banner", is_flag=True, help="Do not print the start-up banner.")
@click.pass_obj
def worker(
    state: CliState,
    pool: str | None,
    concurrency: int | None,
    queues: tuple[str, ...],
    hostname: str | None,
    loglevel: str,
    max_tasks_per_child: int | None,
    max_memory_per_child: int | None,
    time_limit: float | None,
    soft_time_limit: float | None,
    prefetch_multiplier: int | None,
    statedb: str | None,
    without_banner: bool,
) -> None:
    """Start a worker that consumes QUEUES and runs their tasks.

    \b
    SIGTERM or Ctrl-C: warm shutdown (running tasks finish, the rest go back).
    SIGQUIT or a second Ctrl-C: cold shutdown (stop now).
    """
    setup_logging(loglevel)
    from ..errors import CeleriacError
    from ..worker.worker import Worker

    app = state.app()
    try:
        code = Worker(
            app,
            pool=pool,
            concurrency=concurrency,
            queues=_queues(queues),
            hostname=hostname,
            max_tasks_per_child=max_tasks_per_child,
            max_memory_per_child=max_memory_per_child,
            time_limit=time_limit,
            soft_time_limit=soft_time_limit,
            prefetch_multiplier=prefetch_multiplier,
            banner=not without_banner,
            statedb=statedb,
        ).start()
    except CeleriacError as exc:
        raise click.ClickException(str(exc)) from None
    raise SystemExit(code)
