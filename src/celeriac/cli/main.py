"""The ``celeriac`` command group and its shared options (``-A``, ``-b``, ``--result-backend``)."""

from __future__ import annotations

import importlib
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
                cause = exc.__cause__
                detail = _describe_import_error(cause) if cause is not None else ""
                searched = "\n  ".join(p or "." for p in sys.path)
                raise click.ClickException(
                    f"cannot load the app {self.app_ref!r}: {exc}\n"
                    + (f"{detail}\n" if detail else "")
                    + f"searched:\n  {searched}"
                ) from None
        if self.broker:
            app.conf.broker_url = self.broker
        if self.backend:
            app.conf.result_backend = self.backend
        self._app = app
        return app


def _describe_import_error(cause: BaseException) -> str:
    """The error, after the lines of the user's own files it came through: the message
    alone rarely says where a module failed (a SyntaxError names its own line)."""
    detail = "".join(traceback.format_exception_only(type(cause), cause)).strip()
    if isinstance(cause, SyntaxError):
        return detail
    internal = (os.path.dirname(importlib.__file__), os.path.dirname(os.path.dirname(__file__)))
    frames = [
        frame
        for frame in traceback.extract_tb(cause.__traceback__)
        if not frame.filename.startswith(("<frozen", *internal))
    ]
    return "".join(traceback.format_list(frames)) + detail


def setup_logging(level: str) -> None:
    """Only the command configures logging; the library never does."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise click.BadParameter(f"unknown log level {level!r}; use debug, info, warning or error")
    logging.basicConfig(level=numeric, format=LOG_FORMAT, stream=sys.stderr, force=True)
    # redis-py's own debug chatter (e.g. optional handshake probes) is not ours to show
    logging.getLogger("redis").setLevel(max(numeric, logging.INFO))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-A",
    "--app",
    "app_ref",
    metavar="MODULE[:ATTR]",
    help="The app to use: a module holding `app`/`celery`, or module:attribute.",
)
@click.option("-b", "--broker", help="Broker URL, overriding the app's broker_url.")
@click.option("--result-backend", "backend", help="Result backend URL, overriding the app's.")
@click.version_option(package_name="celeriac", prog_name="celeriac")
@click.pass_context
def cli(ctx: click.Context, app_ref: str | None, broker: str | None, backend: str | None) -> None:
    """celeriac: a task queue that speaks Celery's protocol.

    \b
    Start a worker:    celeriac -A proj worker -P prefork -c 4 -Q basic,advanced
    Send a task:       celeriac -A proj call proj.tasks.add --args '[2, 3]'
    Read a result:     celeriac -A proj result <task-id>
    See it all live:   celeriac demo
    """
    ctx.obj = CliState(app_ref, broker, backend)


def _register_commands() -> None:
    from . import dead_cmd, demo_cmd, tasks_cmd, worker_cmd

    cli.add_command(worker_cmd.worker)
    cli.add_command(tasks_cmd.call)
    cli.add_command(tasks_cmd.result)
    cli.add_command(tasks_cmd.purge)
    cli.add_command(dead_cmd.dead)
    if demo_cmd.demo is not None:
        cli.add_command(demo_cmd.demo)


def run(argv: Sequence[str]) -> None:
    _register_commands()
    cli.main(args=list(argv), prog_name="celeriac")


def main() -> None:
    from .boot import main as boot_main

    boot_main()
