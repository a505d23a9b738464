"""Print what was measured in the seed's shapes: a process tree per pool, then its table.

The labels keep the seed's own words (主进程, 子进程, 协程) next to the English, so a reader
of the seed can put the two side by side.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import orjson
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from .checks import SEED_ROWS
from .model import Check, DemoReport, PoolFacts, PoolReport, ProcessFact, UnitFact
from .plan import CPU_TASK_S, CPU_TASKS, IO_TASK_S, IO_TASKS

MAX_UNITS_SHOWN = 6


def _ran_text(ran: dict[str, int], results: dict[str, str]) -> str:
    parts = []
    for label, count in ran.items():
        if label in results:
            parts.append(f"{label} → {results[label]} ⭐")
        else:
            parts.append(label if count == 1 else f"{label} ×{count}")
    return ", ".join(parts) or "nothing"


def _short(value: object, limit: int = 48) -> str:
    text = orjson.dumps(value, default=repr).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _seed_results(facts: PoolFacts) -> dict[str, str]:
    """The seed's own tasks, whose results are worth printing (add(3, 5) → 8)."""
    return {str(call["call"]): _short(call["result"]) for call in facts.seed_calls}


def _compact_amqp(items: list[str]) -> str:
    """``127.0.0.1:41234 → host:5672 (amqp)`` ×2 → ``2 AMQP connections → host:5672: :41234,
    :41236``, each with the name and channels RabbitMQ gave when it was asked (``:41234
    celeriac.child0.7 consumer: 1 channel``); a socket shared with another process keeps its
    own line."""
    by_remote: dict[str, list[str]] = defaultdict(list)
    shared = []
    for item in items:
        name, _, kind = item.rpartition(" (")
        ends, _, rabbit = name.partition(" = ")
        local, _, remote = ends.partition(" → ")
        if kind.startswith("amqp,"):  # "amqp, shared with [...])"
            shared.append(f"{name} ({kind}")
            continue
        port = ":" + local.rpartition(":")[2]
        by_remote[remote].append(f"{port} {rabbit}" if rabbit else port)
    parts = [
        f"{_n(len(conns), 'AMQP connection')} → {remote}: {', '.join(conns)}"
        for remote, conns in by_remote.items()
    ]
    return ", ".join(parts + shared)


def compact_connections(connections: Iterable[str]) -> str:
    """``a.1 (broker), a.1:wake (broker)`` → ``a.1 +:wake (broker)``: one name per socket
    family, so a child's line fits on a screen."""
    connections = list(connections)
    amqp = [item for item in connections if item.endswith(" (amqp)") or " (amqp, " in item]
    if amqp:
        rest = compact_connections([item for item in connections if item not in amqp])
        return ", ".join(part for part in (_compact_amqp(amqp), rest) if part)
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for item in connections:
        name, _, kind = item.rpartition(" (")
        base, sep, suffix = name.partition(":")
        key = (base if kind != "backend)" else name, kind.rstrip(")"))
        groups[key].append(f"{sep}{suffix}" if sep and kind != "backend)" else "")
    parts = []
    for (base, kind), suffixes in groups.items():
        extra = "".join(f" +{s}" for s in sorted(s for s in suffixes if s))
        parts.append(f"{base}{extra} ({kind})")
    return ", ".join(parts)


def _connections_branch(tree: Tree, proc: ProcessFact, facts: PoolFacts) -> None:
    if facts.connection_model == "not measurable on this broker":
        return
    text = compact_connections(proc.connections) if proc.connections else "none"
    tree.add(Text(f"connections: {text}", style="cyan"))


def _prefork_tree(facts: PoolFacts, results: dict[str, str]) -> Tree:
    manager = next(p for p in facts.processes if p.role == "manager")
    tree = Tree(
        Text.assemble(
            (f"进程 PID {manager.pid}", "bold"),
            " (主进程 - Manager)  ",
            (
                f"{_n(manager.num_threads, 'thread')}, ran {_n(sum(manager.ran.values()), 'task')}",
                "dim",
            ),
        )
    )
    _connections_branch(tree, manager, facts)
    forks = tree.add(f"Fork 子进程 (--concurrency={facts.concurrency})")
    children = sorted(
        (p for p in facts.processes if p.role == "child"), key=lambda p: (p.child_index or 0, p.pid)
    )
    for proc in children:
        worker = f"Worker-{proc.child_index + 1}" if proc.child_index is not None else "idle"
        branch = forks.add(
            Text.assemble(
                (f"子进程 PID {proc.pid}", "bold"),
                f" ({worker})  ",
                (f"ppid {proc.ppid}, {_n(proc.num_threads, 'thread')}", "dim"),
            )
        )
        _connections_branch(branch, proc, facts)
        branch.add(Text(f"ran: {_ran_text(proc.ran, results)}", style="green"))
    return tree


def _unit_label(unit: UnitFact) -> str:
    if unit.green is None:
        return "the thread itself"
    kind, _, ident = unit.green.partition(":")
    if kind == "greenlet":
        return f"协程 greenlet {ident}"
    # "tasks.realworld_tasks.io_bound_async[<uuid>]@0x7f…" -> "io_bound_async[1a2b3c4d…]"
    name, _, rest = ident.partition("[")
    short = name.rsplit(".", 1)[-1] + (f"[{rest[:8]}…]" if rest else "")
    return f"协程 asyncio task {short}"


def _single_tree(facts: PoolFacts, results: dict[str, str]) -> Tree:
    manager = next((p for p in facts.processes if p.role == "manager"), None)
    threads = manager.num_threads if manager else 0
    tree = Tree(
        Text.assemble(
            (f"进程 PID {facts.manager_pid}", "bold"),
            " (主进程 - 唯一进程)  ",
            (f"{_n(threads, 'OS thread')}, no child process", "dim"),
        )
    )
    if manager is not None:
        _connections_branch(tree, manager, facts)
    by_thread: dict[int | None, list[UnitFact]] = defaultdict(list)
    for unit in facts.units:
        by_thread[unit.os_thread].append(unit)
    for os_thread, units in by_thread.items():
        name = units[0].thread_name or "?"
        branch = tree.add(Text(f"OS thread {os_thread} ({name})", style="bold"))
        for unit in units[:MAX_UNITS_SHOWN]:
            branch.add(Text(f"{_unit_label(unit)}: {_ran_text(unit.ran, results)}"))
        rest = units[MAX_UNITS_SHOWN:]
        if rest:
            total: dict[str, int] = defaultdict(int)
            for unit in rest:
                for label, count in unit.ran.items():
                    total[label] += count
            branch.add(Text(f"… {len(rest)} more ({_ran_text(dict(total), results)})", style="dim"))
    return tree


def _check_line(item: Check) -> Text:
    mark, style = {True: ("✓", "green"), False: ("✗", "bold red"), None: ("–", "yellow")}[item.ok]
    return Text.assemble(
        (f" {mark} {item.name}: ", style),
        ("seed ", "dim"),
        item.expected,
        ("  measured ", "dim"),
        item.measured,
    )


def pool_section(report: PoolReport) -> Group:
    head = Text(f"━━ {report.pool} ", style="bold magenta")
    if report.facts is None:
        head.append(f"{report.status}: {report.reason}", style="yellow")
        if report.install:
            head.append(f"  ({report.install})", style="dim")
        tail = [Text(f"   {line}", style="dim") for line in report.log_tail]
        return Group(head, *tail)
    facts = report.facts
    head.append(f"(--pool={facts.pool} --concurrency={facts.concurrency})", style="dim")
    results = _seed_results(facts)
    tree = _prefork_tree(facts, results) if facts.child_pids else _single_tree(facts, results)
    return Group(head, tree, *(_check_line(c) for c in report.checks), Text(""))


def _secs(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f} s"


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _vs(value: float | None, base: float | None) -> str:
    if value is None or not base or value <= 0:
        return ""
    return f" (×{base / value:.1f})"


def _row(report: PoolReport, solo: PoolFacts | None) -> list[Text | str]:
    seed = SEED_ROWS.get(report.pool, ("", "", "", ""))
    if report.facts is None:
        note = report.install or report.reason or ""
        return [report.pool, Text(f"{report.status}: {note}", style="yellow"), "", "", "", "", ""]
    facts = report.facts
    cpu, io = facts.batches["cpu"], facts.batches["io"]
    children = f" + {len(facts.child_pids)} children" if facts.child_pids else ""
    failures = sum(1 for c in report.checks if c.ok is False)
    verdict = Text("✓ matches", style="green") if not failures else Text(f"✗ {failures}", "red")
    solo_cpu = solo.batches["cpu"].span_s if solo and solo is not facts else None
    solo_io = solo.batches["io"].span_s if solo and solo is not facts else None

    def cell(measured: str, claim: str) -> Text:
        return Text.assemble(measured, ("\nseed: " + claim, "dim") if claim else "")

    return [
        Text(report.pool, style="bold"),
        cell(f"1{children}", seed[0]),
        cell(facts.where, seed[1]),
        cell(f"{facts.concurrency_mode}, max {io.max_overlap} at once", seed[2]),
        cell(facts.connection_model, seed[3]),
        f"CPU {_secs(cpu.span_s)}{_vs(cpu.span_s, solo_cpu)}\n"
        f"I/O {_secs(io.span_s)}{_vs(io.span_s, solo_io)}",
        verdict,
    ]


def comparison_table(reports: Iterable[PoolReport]) -> Table:
    table = Table(
        title="对比总结 — the seed's comparison table, measured",
        show_lines=True,
        title_style="bold",
    )
    table.add_column("Pool 模式")
    table.add_column("进程数 processes")
    table.add_column("Task 执行位置 (task runs in)")
    table.add_column("并发能力 concurrency")
    table.add_column("连接 connections")
    table.add_column(
        f"time: {CPU_TASKS}×{CPU_TASK_S:g}s CPU, {IO_TASKS}×{IO_TASK_S:g}s I/O (× vs solo)"
    )
    table.add_column("vs seed")
    reports = list(reports)
    solo = next((r.facts for r in reports if r.pool == "solo" and r.facts), None)
    for report in reports:
        table.add_row(*_row(report, solo))
    return table


def render(report: DemoReport, console: Console) -> None:
    console.print(
        Text.assemble(
            ("celeriac demo", "bold"),
            f"  v{report.celeriac} · broker {report.broker} · {report.cpu_count} CPUs · "
            f"{report.elapsed_s:.1f} s",
        )
    )
    console.print()
    for pool_report in report.pools:
        console.print(pool_section(pool_report))
    console.print(comparison_table(report.pools))
    statuses = {r.status for r in report.pools}
    if report.interrupted:
        console.print(Text("interrupted: every worker the demo started was stopped", "yellow"))
    elif "contradiction" in statuses:
        console.print(
            Text("Some measurements contradict the seed's table (✗ above).", style="bold red")
        )
    elif "error" in statuses:
        console.print(
            Text("Some pools could not be measured; their worker logs are above.", "bold red")
        )
    elif "ok" in statuses:
        console.print(Text("Every measurement agrees with the seed's table.", style="bold green"))
    else:
        console.print(Text("No pool could run here; see the install hints above.", "yellow"))
