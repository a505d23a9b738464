"""A project's own remote-control commands: ``@control_command`` and ``@inspect_command``.

Registered commands are answered by every worker of the process that imported them, like
the built-in ones (Celery's ``Panel``). A handler gets the worker's :class:`ControlState`
first, then the broadcast's ``arguments`` as keywords; what it returns is the reply
(``{"ok": ...}`` for a control command, any JSON-able value for an inspect command)::

    from celeriac.worker.control import control_command, inspect_command

    @control_command(args=[("n", int)], signature="[N=1]")
    def increase_counter(state, n=1):
        return {"ok": f"counter up by {n}"}

    @inspect_command()
    def current_hostname(state):
        return {"hostname": state.hostname}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ..app import Celeriac
    from .runtime import WorkerRuntime

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class CommandInfo:
    """What Celery's ``controller_info_t`` says about a command (the CLI and help read it)."""

    alias: str | None
    type: str  # "control" or "inspect"
    visible: bool
    default_timeout: float
    help: str
    signature: str | None
    args: Sequence[tuple[str, Callable[[Any], Any]]] | None
    variadic: str | None


@dataclass
class ControlState:
    """What a command handler gets first (Celery's ``state``): the worker it runs in."""

    app: Celeriac
    hostname: str
    runtime: WorkerRuntime


commands: dict[str, Callable[..., Any]] = {}  # name (and alias) -> handler
meta: dict[str, CommandInfo] = {}


def register(
    *,
    type: str = "control",
    name: str | None = None,
    alias: str | None = None,
    visible: bool = True,
    default_timeout: float = 1.0,
    help: str | None = None,
    signature: str | None = None,
    args: Sequence[tuple[str, Callable[[Any], Any]]] | None = None,
    variadic: str | None = None,
) -> Callable[[F], F]:
    """The decorator both kinds share; *name* defaults to the function's name."""
    if type not in ("control", "inspect"):
        raise ValueError(f"command type must be 'control' or 'inspect', got {type!r}")

    def decorate(fun: F) -> F:
        if not callable(fun):
            raise TypeError(f"a remote-control command must be a function, got {fun!r}")
        command = name or fun.__name__
        summary = help or (fun.__doc__ or "").strip().split("\n")[0]
        commands[command] = fun
        meta[command] = CommandInfo(
            alias, type, visible, default_timeout, summary, signature, args, variadic
        )
        if alias:
            commands[alias] = fun
        return fun

    return decorate


def control_command(**options: Any) -> Callable[[F], F]:
    """Register a command that changes something (``app.control.broadcast(name)``)."""
    return register(type="control", **options)


def inspect_command(**options: Any) -> Callable[[F], F]:
    """Register a command that reports something (``app.control.inspect()._request(name)``)."""
    return register(type="inspect", **options)


def find(name: str, state: ControlState) -> Callable[[dict[str, Any]], Any] | None:
    """The handler of a registered command, taking the broadcast's arguments."""
    fun = commands.get(name)
    if fun is None:
        return None

    def call(arguments: dict[str, Any]) -> Any:
        return fun(state, **arguments)

    return call
