"""``celeriac migrate-imports PATH...``: show (or ``--write``) the rewrite of a project's
``celery`` imports to ``celeriac``; the work is in :mod:`celeriac.migrate`."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("migrate-imports")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--write", is_flag=True, help="Save the rewritten files (default: only show the diff)."
)
def migrate_imports(paths: tuple[Path, ...], write: bool) -> None:
    """Rewrite `celery` imports to `celeriac` in PATHS (files, or directories of .py files).

    \b
    Prints a unified diff; --write saves it. Comments and layout are kept. Imports that
    celeriac does not provide are left as they are and listed with the reason. A file that
    does not parse is never written, and makes the exit status 1.
    """
    from ..errors import ConfigurationError

    try:
        from .. import migrate
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None
    changed = failed = unmapped = 0
    for path in migrate.iter_python_files(paths):
        result = migrate.migrate_path(path, write=write)
        if result.error is not None:
            failed += 1
            click.echo(f"{path}: {result.error}", err=True)
            continue
        if result.changed:
            changed += 1
            click.echo(result.diff(), nl=False)
        for item in result.unmapped:
            unmapped += 1
            click.echo(f"{path}:{item.line}: not migrated: {item.name}: {item.reason}", err=True)
    verb = "rewrote" if write else "would rewrite"
    summary = f"{verb} {changed} file(s)"
    if unmapped:
        summary += f"; {unmapped} import(s) left as celery (listed above)"
    if failed:
        summary += f"; {failed} file(s) could not be read or parsed and were not touched"
    if changed and not write:
        summary += "; run again with --write to save"
    click.echo(summary, err=True)
    if failed:
        raise SystemExit(1)
