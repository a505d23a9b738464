"""The ``celeriac`` command group and its shared options (``-A``, ``-b``, ``--result-backend``)."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ..app import Celeriac

LOG_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s %(process)d] %(message)s"


@dataclass
class CliState:
    app_ref: str | None
    broker: str | None
    backend: str | None
    config: str | None = None  # --config: a settings module, as Celery's --config
    quiet: bool = False
    no_color: bool = False
    _app: Celeriac | None = None

    def app(self) -> Celeriac:
        """Load the ``-A`` app (or a bare one when none is named), with a readable error."""
        if self._app is not None:
            return self._app
        from ..app import Celeriac, load_app
        from ..errors import ImproperlyConfigured

        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        if self.app_ref is None:
            app = Celeriac()
        else:
            try:
                app = load_app(self.app_ref)
            except ImproperlyConfigured as exc:
                raise click.ClickException(_load_failure(self.app_ref, exc)) from None
        if self.config:
            _load_config(app, self.config)
        if self.broker:
            app.conf.broker_url = self.broker
        if self.backend:
            app.conf.result_backend = self.backend
        self._app = app
        return app


def _debug_requested() -> bool:
    ctx = click.get_current_context(silent=True)
    level = ctx.params.get("loglevel") if ctx is not None else None
    if isinstance(level, str) and level.lower() == "debug":
        return True
    return logging.getLogger().isEnabledFor(logging.DEBUG)


def _load_failure(app_ref: str, exc: Exception) -> str:
    """One line: the module, the error, the user's line it came from and what to do (for
    Django, where DJANGO_SETTINGS_MODULE goes). A module that was not found also lists the
    path searched; ``-l debug`` prints the traceback first."""
    from ..app.modules import describe_import_failure

    cause = exc.__cause__
    if cause is None:
        return f"cannot load the app {app_ref!r}: {exc}"
    if _debug_requested():  # the command's logging is not set up yet: the app configures it
        sys.stderr.write(
            "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
        )
    line = f"cannot load the app {app_ref!r}: " + describe_import_failure(
        app_ref.partition(":")[0], cause
    )
    if isinstance(cause, ModuleNotFoundError):
        searched = "\n  ".join(p or "." for p in sys.path)
        line += f"\nsearched:\n  {searched}"
    return line


def _load_config(app: Celeriac, module: str) -> None:
    from ..errors import ImproperlyConfigured

    try:
        app.config_from_object(module)
    except (ImproperlyConfigured, ImportError) as exc:
        raise click.ClickException(
            f"--config {module}: cannot load that settings module ({exc}); give an importable "
            "module name such as proj.celeryconfig, run from its parent directory or use --workdir"
        ) from None


def setup_logging(level: str) -> None:
    """Only the command configures logging; the library never does."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise click.BadParameter(f"unknown log level {level!r}; use debug, info, warning or error")
    logging.basicConfig(level=numeric, format=LOG_FORMAT, stream=sys.stderr, force=True)
    # redis-py's own debug chatter (e.g. optional handshake probes) is not ours to show
    logging.getLogger("redis").setLevel(max(numeric, logging.INFO))


class SuggestingGroup(click.Group):
    """Answers every unknown option, of the group or of any command, with the closest real
    one (click itself suggests only near misses of long options)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            raise _with_suggestion(exc) from None

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except click.NoSuchOption as exc:
            raise _with_suggestion(exc) from None


def _with_suggestion(exc: click.NoSuchOption) -> click.NoSuchOption:
    import difflib

    if exc.possibilities or exc.ctx is None:
        return exc
    names = [
        name
        for param in exc.ctx.command.get_params(exc.ctx)
        if isinstance(param, click.Option)
        for name in (*param.opts, *param.secondary_opts)
    ]
    wanted = exc.option_name
    if wanted.startswith("--"):  # a long miss is answered by a long option
        names = [n for n in names if n.startswith("--")] or names
    best = difflib.get_close_matches(wanted, names, n=1, cutoff=0.0)
    if not best:
        return exc
    return click.NoSuchOption(
        wanted,
        message=f"No such option {wanted!r}. Did you mean {best[0]!r}?",
        ctx=exc.ctx,
    )


@click.group(cls=SuggestingGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-A",
    "--app",
    "app_ref",
    metavar="MODULE[:ATTR]",
    help="The app to use: a module holding `app`/`celery`, or module:attribute.",
)
@click.option("-b", "--broker", help="Broker URL, overriding the app's broker_url.")
@click.option("--result-backend", "backend", help="Result backend URL, overriding the app's.")
@click.option("--config", default=None, help="Settings module, e.g. proj.celeryconfig.")
@click.option(
    "--workdir",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="Change to this directory before anything else.",
)
@click.option("-C", "--no-color", is_flag=True, help="No colour in the output.")
@click.option("-q", "--quiet", is_flag=True, help="Less output (no worker banner).")
@click.version_option(package_name="celeriac", prog_name="celeriac")
@click.pass_context
def cli(
    ctx: click.Context,
    app_ref: str | None,
    broker: str | None,
    backend: str | None,
    config: str | None,
    workdir: str | None,
    no_color: bool,
    quiet: bool,
) -> None:
    """celeriac: a task queue that speaks Celery's protocol.

    \b
    Start a worker:    celeriac -A proj worker -P prefork -c 4 -Q basic,advanced
    Send a task:       celeriac -A proj call proj.tasks.add --args '[2, 3]'
    Read a result:     celeriac -A proj result <task-id>
    See it all live:   celeriac demo
    """
    if workdir:
        os.chdir(workdir)
    ctx.obj = CliState(app_ref, broker, backend, config=config, quiet=quiet, no_color=no_color)


def _register_commands() -> None:
    from . import (
        beat_cmd,
        dead_cmd,
        demo_cmd,
        migrate_cmd,
        multi_cmd,
        report_cmd,
        shell_cmd,
        tasks_cmd,
        worker_cmd,
    )

    cli.add_command(worker_cmd.worker)
    cli.add_command(beat_cmd.beat)
    cli.add_command(multi_cmd.multi)
    cli.add_command(report_cmd.report)
    cli.add_command(shell_cmd.shell)
    cli.add_command(tasks_cmd.call)
    cli.add_command(tasks_cmd.result)
    cli.add_command(tasks_cmd.purge)
    cli.add_command(dead_cmd.dead)
    cli.add_command(migrate_cmd.migrate_imports)
    from . import dashboard_cmd, events_cmd, inspect_cmd

    cli.add_command(dashboard_cmd.dashboard)
    cli.add_command(events_cmd.events)
    cli.add_command(inspect_cmd.inspect)
    cli.add_command(inspect_cmd.control)
    cli.add_command(inspect_cmd.status)
    if demo_cmd.demo is not None:
        cli.add_command(demo_cmd.demo)


def run(argv: Sequence[str]) -> None:
    _register_commands()
    cli.main(args=list(argv), prog_name="celeriac")


def main() -> None:
    from .boot import main as boot_main

    boot_main()
