"""``celeriac report``: what to paste into a bug report (versions, platform, masked settings)."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

import click

from ..urls import masked, safe_url
from .main import CliState

MASK = "********"  # what urls.masked shows for a secret-looking setting
PACKAGES = ("celeriac", "redis", "hiredis", "orjson", "click", "kombu", "celery", "django")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def report_text(state: CliState) -> str:
    app = state.app()
    lines = [
        f"software -> celeriac:{_version('celeriac')} python:{platform.python_version()} "
        f"({platform.python_implementation()})",
        f"platform -> system:{platform.system()} arch:{platform.machine()} "
        f"release:{platform.release()}",
        f"loader   -> app:{app.main or '__main__'}",
        f"settings -> transport:{safe_url(app.broker_url)} results:{safe_url(app.backend_url)}",
        "",
        "packages:",
        *[f"  {name}: {_version(name)}" for name in PACKAGES if _version(name)],
        "",
        "changed settings:",
    ]
    conf = app.conf
    for key in sorted(conf):
        if conf.is_set(key):
            lines.append(f"  {key}: {masked(key, conf[key])!r}")
    lines.append(f"executable: {sys.executable}")
    return "\n".join(lines)


@click.command()
@click.pass_obj
def report(state: CliState) -> None:
    """Show versions, platform and settings (passwords masked) for bug reports."""
    click.echo(report_text(state))
