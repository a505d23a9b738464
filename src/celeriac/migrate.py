"""``celeriac migrate-imports``: rewrite a project's ``celery`` imports to ``celeriac``.

The rewrite works on libcst's concrete syntax tree, so everything but the module names
(comments, blank lines, quotes, layout) stays byte for byte. It covers ``import celery``
(and the ``celery.X`` uses of that name), ``import celery.x.y [as z]``, ``from celery
import X`` and ``from celery.x.y import Z``; strings (``-A proj``, ``"celery.tasks.x"``) are
left alone.

A statement is rewritten only when celeriac really provides what it names: the module
imports here and has the name. Anything else stays as it was and is listed with the reason,
so nothing half-migrated is written.
"""

from __future__ import annotations

import difflib
import importlib
import os
import types
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from .errors import ConfigurationError

try:
    import libcst as cst
    from libcst.metadata import (
        Assignment,
        MetadataWrapper,
        ParentNodeProvider,
        PositionProvider,
        ScopeProvider,
    )
except ImportError as exc:  # the 'migrate' extra is not installed
    raise ConfigurationError(
        "migrate-imports needs libcst; install it with: pip install 'celeriac[migrate]'"
    ) from exc

__all__ = ["FileResult", "Unmapped", "iter_python_files", "migrate_path", "migrate_source"]

SOURCE = "celery"
TARGET = "celeriac"
_SKIP_DIRS = {"__pycache__", "node_modules", "site-packages", "venv", "env"}


@dataclass(frozen=True)
class Unmapped:
    """A ``celery`` name celeriac does not provide, left as it was."""

    line: int
    name: str
    reason: str


@dataclass
class FileResult:
    path: Path
    old: str = ""
    new: str = ""
    unmapped: list[Unmapped] = field(default_factory=list)
    error: str | None = None  # the file was not parsed (or not read): nothing is written
    encoded: bytes = b""

    @property
    def changed(self) -> bool:
        return self.error is None and self.old != self.new

    def diff(self) -> str:
        name = self.path.as_posix().lstrip("/")
        return "".join(
            difflib.unified_diff(
                self.old.splitlines(keepends=True),
                self.new.splitlines(keepends=True),
                fromfile=f"a/{name}",
                tofile=f"b/{name}",
            )
        )


# what celeriac provides, decided by importing it
@cache
def _module_problem(dotted: str) -> str | None:
    """None when module *dotted* imports, else why not."""
    try:
        importlib.import_module(dotted)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (dotted == exc.name or dotted.startswith(f"{exc.name}.")):
            return f"celeriac has no module {dotted}"
        return f"{dotted} does not import here: {exc}"
    except Exception as exc:  # any failure of the module itself: say which
        return f"{dotted} does not import here: {type(exc).__name__}: {exc}"
    return None


def _name_problem(module: str, name: str) -> str | None:
    """None when ``from module import name`` works, else why not."""
    problem = _module_problem(module)
    if problem is not None:
        return problem
    if hasattr(importlib.import_module(module), name):
        return None
    if _module_problem(f"{module}.{name}") is None:
        return None
    return f"{module} has no name {name!r}"


def _chain_problem(parts: Sequence[str]) -> str | None:
    """None when the dotted chain resolves through celeriac's modules; it stops checking at
    the first value that is not a module (attributes of a class are its own business)."""
    value: object = importlib.import_module(parts[0])
    dotted = parts[0]
    for part in parts[1:]:
        if not isinstance(value, types.ModuleType):
            return None
        problem = _name_problem(dotted, part)
        if problem is not None:
            return problem
        dotted = f"{dotted}.{part}"
        found = getattr(value, part, None)
        value = found if found is not None else importlib.import_module(dotted)
    return None


def _dotted(node: cst.BaseExpression) -> str:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return f"{_dotted(node.value)}.{node.attr.value}"
    raise ValueError(f"not a dotted name: {node!r}")


def _retarget(dotted: str) -> str:
    return TARGET + dotted[len(SOURCE) :]


def _is_source(dotted: str) -> bool:
    return dotted == SOURCE or dotted.startswith(f"{SOURCE}.")


def _dotted_expr(dotted: str) -> cst.Attribute | cst.Name:
    expr = cst.parse_expression(dotted)
    assert isinstance(expr, (cst.Attribute, cst.Name))
    return expr


class _Planner:
    """Decides, statement by statement, what is rewritten and what is listed as unmapped."""

    def __init__(self, wrapper: MetadataWrapper) -> None:
        self.positions = wrapper.resolve(PositionProvider)
        self.parents = wrapper.resolve(ParentNodeProvider)
        self.scopes = wrapper.resolve(ScopeProvider)
        self.module = wrapper.module
        self.new_names: dict[cst.CSTNode, cst.Attribute | cst.Name] = {}
        self.renamed: set[cst.CSTNode] = set()
        self.unmapped: list[Unmapped] = []

    def line(self, node: cst.CSTNode) -> int:
        return int(self.positions[node].start.line)

    def plan(self) -> None:
        imports: list[cst.Import] = []
        froms: list[cst.ImportFrom] = []

        class Collect(cst.CSTVisitor):
            def visit_Import(self, node: cst.Import) -> None:
                imports.append(node)

            def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
                froms.append(node)

        self.module.visit(Collect())
        for statement in imports:
            for alias in statement.names:
                self._plan_import(statement, alias)
        for from_statement in froms:
            self._plan_from(from_statement)

    def _plan_import(self, statement: cst.Import, alias: cst.ImportAlias) -> None:
        dotted = _dotted(alias.name)
        if not _is_source(dotted):
            return
        problems: list[Unmapped] = []
        problem = _module_problem(_retarget(dotted))
        if problem is not None:
            problems.append(Unmapped(self.line(alias), dotted, problem))
        bound = alias.asname.name if alias.asname is not None else None
        bound_name = bound.value if isinstance(bound, cst.Name) else None
        roots = self._references(statement, bound_name or dotted)
        for root in roots:
            chain = self._chain(root)
            full = _retarget(dotted) if bound_name else TARGET
            parts = [*full.split("."), *chain[1:]]
            problem = _chain_problem(parts) if not problems else None
            if problem is not None:
                problems.append(Unmapped(self.line(root), ".".join([SOURCE, *parts[1:]]), problem))
        if problems:
            self.unmapped.extend(problems)
            return
        self.new_names[alias] = _dotted_expr(_retarget(dotted))
        if bound_name is None:
            self.renamed.update(roots)

    def _references(self, statement: cst.Import, bound: str) -> list[cst.Name]:
        """The leftmost Name of every use of the name(s) *statement* binds for *bound*."""
        wanted = {bound, bound.split(".")[0]}
        roots: dict[int, cst.Name] = {}
        for scope in {s for s in self.scopes.values() if s is not None}:
            for assignment in scope.assignments:
                if not isinstance(assignment, Assignment) or assignment.node is not statement:
                    continue
                if assignment.name not in wanted:
                    continue
                for access in assignment.references:
                    node: cst.CSTNode = access.node
                    while isinstance(node, cst.Attribute):
                        node = node.value
                    if isinstance(node, cst.Name):
                        roots[id(node)] = node
        return list(roots.values())

    def _chain(self, root: cst.Name) -> list[str]:
        """``celery.app.task.Task`` for the Name ``celery`` at its left."""
        parts = [root.value]
        node: cst.CSTNode = root
        parent = self.parents.get(node)
        while isinstance(parent, cst.Attribute) and parent.value is node:
            parts.append(parent.attr.value)
            node, parent = parent, self.parents.get(parent)
        return parts

    def _plan_from(self, statement: cst.ImportFrom) -> None:
        if statement.relative or statement.module is None:
            return
        dotted = _dotted(statement.module)
        if not _is_source(dotted):
            return
        target = _retarget(dotted)
        problems: list[Unmapped] = []
        problem = _module_problem(target)
        if problem is not None:
            problems.append(Unmapped(self.line(statement), dotted, problem))
        elif not isinstance(statement.names, cst.ImportStar):
            for alias in statement.names:
                name = _dotted(alias.name)
                problem = _name_problem(target, name)
                if problem is not None:
                    problems.append(Unmapped(self.line(alias), f"{dotted}.{name}", problem))
        if problems:
            self.unmapped.extend(problems)
            return
        self.new_names[statement] = _dotted_expr(target)


class _Rewrite(cst.CSTTransformer):
    def __init__(self, planner: _Planner) -> None:
        super().__init__()
        self.planner = planner

    def leave_ImportAlias(
        self, original_node: cst.ImportAlias, updated_node: cst.ImportAlias
    ) -> cst.ImportAlias:
        new = self.planner.new_names.get(original_node)
        return updated_node.with_changes(name=new) if new is not None else updated_node

    def leave_ImportFrom(
        self, original_node: cst.ImportFrom, updated_node: cst.ImportFrom
    ) -> cst.ImportFrom:
        new = self.planner.new_names.get(original_node)
        return updated_node.with_changes(module=new) if new is not None else updated_node

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.Name:
        if original_node in self.planner.renamed:
            return updated_node.with_changes(value=TARGET)
        return updated_node


def migrate_source(source: bytes, path: Path) -> FileResult:
    """The rewritten text of one file (nothing written); ``error`` set when it cannot parse."""
    result = FileResult(path)
    try:
        module = cst.parse_module(source)
    except (cst.ParserSyntaxError, UnicodeDecodeError, SyntaxError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        result.error = f"cannot parse it, left unchanged: {first_line}"
        return result
    wrapper = MetadataWrapper(module)
    planner = _Planner(wrapper)
    planner.plan()
    rewritten = wrapper.module.visit(_Rewrite(planner))
    result.old = wrapper.module.code
    result.new = rewritten.code
    result.encoded = rewritten.bytes
    result.unmapped = sorted(set(planner.unmapped), key=lambda u: (u.line, u.name))
    return result


def migrate_path(path: Path, write: bool) -> FileResult:
    """Rewrite one file; with *write*, save it when it changed (and only if it parsed)."""
    try:
        source = path.read_bytes()
    except OSError as exc:
        return FileResult(path, error=f"cannot read it: {exc.strerror or exc}")
    result = migrate_source(source, path)
    if write and result.changed:
        path.write_bytes(result.encoded)
    return result


def iter_python_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Each path that is a file, and every ``.py`` file under each directory (skipping
    hidden directories, virtualenvs and caches), in a stable order."""
    for path in paths:
        if not path.is_dir():
            yield path
            continue
        for folder, dirs, files in os.walk(path):
            dirs[:] = sorted(
                d
                for d in dirs
                if not d.startswith(".")
                and d not in _SKIP_DIRS
                and not (Path(folder, d) / "pyvenv.cfg").exists()
            )
            for name in sorted(files):
                if name.endswith(".py"):
                    yield Path(folder, name)
