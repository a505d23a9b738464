"""``celeriac shell``: a Python prompt with the app, its tasks and celeriac's names loaded."""

from __future__ import annotations

import code
import importlib
from typing import Any

import click

from .main import CliState


def shell_namespace(state: CliState, with_tasks: bool = True) -> dict[str, Any]:
    """What the prompt starts with: ``app`` (also ``celery``), celeriac's public names,
    and each registered task under the last part of its name."""
    import celeriac

    app = state.app()
    namespace: dict[str, Any] = {"app": app, "celery": app, "celeriac": celeriac}
    namespace.update({name: getattr(celeriac, name) for name in celeriac.__all__})
    if with_tasks:
        app.import_task_modules()
        for name, task in sorted(app.tasks.items()):
            if not name.startswith("celery."):
                namespace[name.rsplit(".", 1)[-1]] = task
    return namespace


def _banner(namespace: dict[str, Any]) -> str:
    tasks = sorted(k for k, v in namespace.items() if hasattr(v, "apply_async") and k[0] != "_")
    return "celeriac shell: `app` is the app; celeriac's names are loaded" + (
        f"; tasks: {', '.join(tasks)}" if tasks else ""
    )


@click.command()
@click.option("--ipython", "use_ipython", is_flag=True, help="Use IPython (if installed).")
@click.option("--python", "use_python", is_flag=True, help="Use the plain Python prompt.")
@click.option("--without-tasks", is_flag=True, help="Do not import the task modules.")
@click.option("-c", "--command", default=None, help="Run this code instead of a prompt.")
@click.pass_obj
def shell(
    state: CliState,
    use_ipython: bool,
    use_python: bool,
    without_tasks: bool,
    command: str | None,
) -> None:
    """Start a Python prompt with the app and its tasks loaded."""
    namespace = shell_namespace(state, with_tasks=not without_tasks)
    if command is not None:
        exec(compile(command, "<celeriac shell -c>", "exec"), namespace)
        return
    if use_ipython or not use_python:
        try:
            ipython: Any = importlib.import_module("IPython")
        except ImportError:
            if use_ipython:
                raise click.ClickException(
                    "--ipython: IPython is not installed; pip install ipython, "
                    "or leave --ipython out for the plain Python prompt"
                ) from None
        else:
            ipython.start_ipython(argv=[], user_ns=namespace)
            return
    code.interact(banner=_banner(namespace), local=namespace, exitmsg="")
