"""Importing an app's task modules: autodiscovery, and one clear line when an import fails."""

from __future__ import annotations

import importlib
import logging
import os
import sysconfig
import traceback
from collections.abc import Callable, Iterable

from ..errors import ImproperlyConfigured
from ..fixups.django import hint_for

logger = logging.getLogger(__name__)

Packages = Iterable[str] | Callable[[], Iterable[str]] | None

_CELERIAC_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def discover(packages: Iterable[str], related_name: str | None) -> list[str]:
    """Import ``package.<related_name>`` for each package that has one (the package itself
    when *related_name* is None); returns the names imported. A package without that module
    is skipped; a module that exists but fails to import is an error."""
    found = []
    for package in packages:
        import_task_module(package)
        if related_name is None:
            found.append(package)
            continue
        candidate = f"{package}.{related_name}"
        try:
            importlib.import_module(candidate)
        except ModuleNotFoundError as exc:
            if exc.name == candidate:
                continue
            raise _failure(candidate, exc) from exc
        except Exception as exc:
            raise _failure(candidate, exc) from exc
        found.append(candidate)
    return found


def import_task_module(name: str) -> None:
    """Import one module named by ``include``/``imports``/``autodiscover_tasks``; a failure
    raises ImproperlyConfigured with a one-line message (the traceback is logged at DEBUG)."""
    try:
        importlib.import_module(name)
    except Exception as exc:
        raise _failure(name, exc) from exc


def _failure(module: str, exc: BaseException) -> ImproperlyConfigured:
    logger.debug("importing %s failed", module, exc_info=exc)
    return ImproperlyConfigured(describe_import_failure(module, exc))


def describe_import_failure(module: str, exc: BaseException) -> str:
    """One line: the module, the exception, the user's line it came from, what to do."""
    detail = str(exc).strip().splitlines()
    text = f"cannot import {module!r}: {type(exc).__name__}" + (f": {detail[0]}" if detail else "")
    where = _where(exc)
    if where:
        text += f" ({where})"
    hint = hint_for(exc)
    if hint:
        return f"{text}; {hint}"
    return f"{text}; fix that module, or run the worker with -l debug for the traceback"


def _where(exc: BaseException) -> str:
    """The deepest line of the user's own code in the traceback: the import that failed
    seldom says where, and the frames inside Django or importlib are not where to look."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f'File "{exc.filename}", line {exc.lineno}'
    library = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib")}
    skipped = ("<frozen", _CELERIAC_DIR, *library)
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith(skipped)
    ]
    if not frames:
        return ""
    last = frames[-1]
    where = f'File "{last.filename}", line {last.lineno}'
    # the line that imported the failing file says more than the file's own line alone
    importer = next((f for f in reversed(frames) if f.filename != last.filename), None)
    if importer is not None:
        where = f'File "{importer.filename}", line {importer.lineno} > {where}'
    return where
