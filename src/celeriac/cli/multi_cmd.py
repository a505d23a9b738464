"""``celeriac multi``: start, stop and restart several detached workers, as ``celery multi``.

Node names follow Celery: ``multi start 3`` names ``celery1@host`` .. ``celery3@host``
(``--range-prefix`` changes ``celery``); ``multi start w1 w2@example.com`` names them. The
options after the names go to every node's ``celeriac worker --detach``; ``-c:w1 4`` (or
``-c:1-3``, ``-c:1,2``) gives one node or some nodes their own value. ``%n``, ``%h``,
``%d`` and ``%p`` expand per node; ``%i``/``%I`` are left for the worker. Each node gets
``--pidfile=%n.pid --logfile=%n%I.log`` unless told otherwise; stop and kill find the
processes through those pidfiles.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import click

from ..pids import pid_alive
from .daemon import read_pid
from .main import CliState
from .nodenames import gethostname, host_format, node_format

# options that go before ``worker`` (the group's); the rest are the worker's
GLOBAL_VALUE = {"-A", "--app", "-b", "--broker", "--result-backend", "--config", "--workdir"}
GLOBAL_FLAG = {"-q", "--quiet", "-C", "--no-color"}
MULTI_VALUE = {"--range-prefix", "--executable", "--cmd"}
MULTI_FLAG = {"--nosplash", "--verbose"}
DEFAULTS = {"--pidfile": "%n.pid", "--logfile": "%n%I.log"}
ALIASES = {"-f": "--logfile", "-n": "--hostname"}
WAIT_STEP_S = 0.1


@dataclass
class Node:
    name: str  # the full node name, w1@host
    index: int  # 1-based position on the command line
    options: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def short(self) -> str:
        return self.name.partition("@")[0]

    def option(self, name: str) -> str | None:
        for key, value in reversed(self.options):
            if key == name:
                return value
        return None

    @property
    def pidfile(self) -> str:
        return os.path.abspath(node_format(self.option("--pidfile") or "", self.name, keep=True))


@dataclass
class Plan:
    nodes: list[Node]
    global_args: list[str]
    executable: str
    verbose: bool = False
    nosplash: bool = False

    def command(self, node: Node) -> list[str]:
        argv = [self.executable, "-m", "celeriac", *self.global_args, "worker", "--detach"]
        argv.append(f"--hostname={node.name}")
        for key, value in node.options:
            argv.extend(_option_words(key, value, node.name))
        return argv


def _option_words(key: str, value: str | None, node: str) -> list[str]:
    """``--opt=value`` for a long option, ``-o value`` for a short one (``-o=value``
    would give the value ``=value``)."""
    if value is None:
        return [key]
    expanded = node_format(value, node, keep=True)
    return [f"{key}={expanded}"] if key.startswith("--") else [key, expanded]


def _worker_options(flags_only: bool = False) -> set[str]:
    from .worker_cmd import worker

    return {
        name
        for param in worker.params
        if isinstance(param, click.Option) and (param.is_flag or not flags_only)
        for name in (*param.opts, *param.secondary_opts)
    }


def _check_worker_option(option: str) -> None:
    """A mistyped option fails here, once, with the closest real one, rather than in
    every node's log."""
    import difflib

    known = _worker_options()
    if option in known:
        return
    pool = [n for n in known if n.startswith("--")] if option.startswith("--") else known
    best = difflib.get_close_matches(option, sorted(pool), n=1, cutoff=0.0)
    hint = f" Did you mean {best[0]!r}?" if best else ""
    raise click.UsageError(f"No such worker option {option!r}.{hint}")


def _selected(selector: str, name: str, index: int) -> bool:
    """``w1``, ``w1@host``, ``2``, ``1-3`` or ``1,2``: does it name this node?"""
    for part in selector.split(","):
        low, dash, high = part.partition("-")
        if dash and low.isdigit() and high.isdigit():
            if int(low) <= index <= int(high):
                return True
        elif part.isdigit():
            if int(part) == index:
                return True
        elif part in (name, name.partition("@")[0]):
            return True
    return False


def _node_names(names: list[str], prefix: str) -> list[str]:
    host = gethostname()
    if len(names) == 1 and names[0].isdigit():
        names = [f"{prefix}{i}" for i in range(1, int(names[0]) + 1)]
    if not names:
        raise click.UsageError("name the nodes: celeriac multi start w1 w2, or a count: start 3")
    full = []
    for name in names:
        expanded = host_format(name, host)
        full.append(expanded if "@" in expanded else f"{expanded}@{host}")
    return full


def _split_args(args: Sequence[str]) -> tuple[list[str], list[tuple[str, str | None]]]:
    """Node names and (option, value) pairs. An option's value is the next word unless
    the option is a flag or the next word is an option itself; any other word is a node
    name, wherever it stands (``multi start -A proj w1 -l info`` names w1)."""
    flags = _worker_options(flags_only=True) | GLOBAL_FLAG | MULTI_FLAG
    names: list[str] = []
    pairs: list[tuple[str, str | None]] = []
    i = 0
    while i < len(args):
        word = args[i]
        i += 1
        if not word.startswith("-") or word == "-":
            names.append(word)
            continue
        key, eq, value = word.partition("=")
        if eq:
            pairs.append((key, value))
        elif key.partition(":")[0] in flags:
            pairs.append((key, None))
        elif i < len(args) and not args[i].startswith("-"):
            pairs.append((key, args[i]))
            i += 1
        else:
            pairs.append((key, None))
    return names, pairs


def build_plan(args: Sequence[str], state: CliState | None = None) -> Plan:
    names, pairs = _split_args(args)
    prefix, executable = "celery", sys.executable
    global_args = _state_args(state)
    verbose = nosplash = False
    worker_pairs: list[tuple[str, str | None, str | None]] = []  # option, selector, value
    for key, value in pairs:
        option, _, selector = key.partition(":")
        option = ALIASES.get(option, option)
        if option == "--range-prefix":
            prefix = value or prefix
        elif option == "--executable":
            executable = value or executable
        elif option == "--cmd":
            pass  # Celery's init script names its worker program; ours is celeriac worker
        elif option in MULTI_FLAG:
            verbose = verbose or option == "--verbose"
            nosplash = nosplash or option == "--nosplash"
        elif option in GLOBAL_VALUE or option in GLOBAL_FLAG:
            global_args.extend(_option_words(option, value, ""))
        else:
            _check_worker_option(option)
            worker_pairs.append((option, selector or None, value))
    nodes = [Node(name, i) for i, name in enumerate(_node_names(names, prefix), start=1)]
    for node in nodes:
        chosen: dict[str, str | None] = dict(DEFAULTS)
        # the options for all nodes first, then those for this node, which win
        for name, chooser, given in sorted(worker_pairs, key=lambda p: p[1] is not None):
            if chooser is None or _selected(chooser, node.name, node.index):
                chosen[name] = given
        chosen.pop("--hostname", None)  # a node's name is its own
        node.options = list(chosen.items())
    return Plan(nodes, global_args, executable, verbose, nosplash)


def _state_args(state: CliState | None) -> list[str]:
    if state is None:
        return []
    args = []
    for option, value in (
        ("--app", state.app_ref),
        ("--broker", state.broker),
        ("--result-backend", state.backend),
        ("--config", state.config),
    ):
        if value:
            args.append(f"{option}={value}")
    return args


def _start(plan: Plan) -> int:
    failed = 0
    click.echo("> Starting nodes...")
    for node in plan.nodes:
        argv = plan.command(node)
        if plan.verbose:
            click.echo(f"  {' '.join(argv)}")
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode == 0:
            click.echo(f"\t> {node.name}: OK")
        else:
            failed += 1
            detail = (done.stderr or done.stdout).strip().splitlines()
            click.echo(f"\t> {node.name}: FAILED (exit {done.returncode})")
            for line in detail[-5:]:
                click.echo(f"\t  {line}")
    return 1 if failed else 0


def _signal_nodes(plan: Plan, signum: int, verb: str) -> dict[str, int]:
    """Send *signum* to every node that has a live pidfile; returns name -> pid."""
    click.echo(f"> {verb} nodes...")
    sent: dict[str, int] = {}
    for node in plan.nodes:
        pid = read_pid(node.pidfile)
        if pid is None or not pid_alive(pid):
            click.echo(f"\t> {node.name}: DOWN")
            continue
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            click.echo(f"\t> {node.name}: DOWN")
            continue
        except PermissionError:
            click.echo(f"\t> {node.name}: not allowed to signal pid {pid} (run as its user)")
            continue
        click.echo(f"\t> {node.name}: {signal.Signals(signum).name[3:]} -> {pid}")
        sent[node.name] = pid
    return sent


def _wait_gone(sent: dict[str, int]) -> None:
    waiting = dict(sent)
    if waiting:
        click.echo(
            f"> Waiting for {len(waiting)} node(s) -> {', '.join(map(str, waiting.values()))}"
        )
    while waiting:
        for name, pid in list(waiting.items()):
            if not pid_alive(pid):
                click.echo(f"\t> {name}: DOWN")
                del waiting[name]
        if waiting:
            time.sleep(WAIT_STEP_S)


def _stop(plan: Plan) -> int:
    _signal_nodes(plan, signal.SIGTERM, "Stopping")
    return 0


def _stopwait(plan: Plan) -> int:
    _wait_gone(_signal_nodes(plan, signal.SIGTERM, "Stopping"))
    return 0


def _kill(plan: Plan) -> int:
    sent = _signal_nodes(plan, signal.SIGKILL, "Killing")
    _wait_gone(sent)
    for node in plan.nodes:
        if node.name in sent:  # it could not remove its own pidfile
            with contextlib.suppress(OSError):
                os.unlink(node.pidfile)
    return 0


def _restart(plan: Plan) -> int:
    _stopwait(plan)
    return _start(plan)


def _show(plan: Plan) -> int:
    for node in plan.nodes:
        click.echo(" ".join(plan.command(node)))
    return 0


def _names(plan: Plan) -> int:
    for node in plan.nodes:
        click.echo(node.name)
    return 0


ACTIONS: dict[str, Callable[[Plan], int]] = {
    "start": _start,
    "stop": _stop,
    "stopwait": _stopwait,
    "kill": _kill,
    "restart": _restart,
    "show": _show,
    "names": _names,
}


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    add_help_option=False,
)
@click.argument("action", required=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def multi(ctx: click.Context, action: str | None, args: tuple[str, ...]) -> None:
    """Start, stop or restart several detached workers, as celery multi does.

    \b
    celeriac multi start w1 w2 -A proj -l info
    celeriac multi start 3 -c 2 -c:1 4 --pidfile=/var/run/celery/%n.pid
    celeriac multi stopwait w1 w2 --pidfile=/var/run/celery/%n.pid
    celeriac multi restart|stop|kill|show|names ...  (the same names and options as start)
    """
    if action in (None, "help", "-h", "--help"):
        click.echo(ctx.get_help())
        return
    run = ACTIONS.get(action)
    if run is None:
        raise click.UsageError(
            f"unknown multi command {action!r}; use one of {', '.join(ACTIONS)}", ctx=ctx
        )
    state = ctx.obj if isinstance(ctx.obj, CliState) else None
    raise SystemExit(run(build_plan(args, state)))
