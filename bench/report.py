"""Medians, ratios and targets: the tables printed at the end and written to RESULTS.md."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path


@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    unit: str
    higher_is_better: bool
    digits: int = 0


METRICS = [
    Metric("W1", "W1 enqueue, one by one", "tasks/s", True),
    Metric("W1 bulk", "W1 enqueue, bulk path", "tasks/s", True),
    Metric("W2", "W2 drain, one slot, no results", "tasks/s", True),
    Metric("W2b", "W2b drain, best on 2 cores", "tasks/s", True),
    Metric("W3 p50", "W3 round trip p50", "ms", False, 3),
    Metric("W3 p99", "W3 round trip p99", "ms", False, 3),
    Metric("W4 1", "W4 idle RSS sum, one slot", "MiB", False, 1),
    Metric("W4 4", "W4 idle RSS sum, 4 processes", "MiB", False, 1),
    Metric("W4 1 pss", "W4 idle PSS sum, one slot", "MiB", False, 1),
    Metric("W4 4 pss", "W4 idle PSS sum, 4 processes", "MiB", False, 1),
    Metric("W5", "W5 drain with results, one slot", "tasks/s", True),
]
LIMITS = [
    Metric("L lpush", "raw LPUSH, one by one", "msg/s", True),
    Metric("L conn", "raw LPUSH, one by one, bare connection (no client layer)", "msg/s", True),
    Metric("L pipe", "raw LPUSH, pipelined", "msg/s", True),
    Metric("L naive", "raw naive consumer (one BRPOP, then the task's INCR + SET)", "msg/s", True),
    Metric("L brpop", "raw BRPOP loop alone (no task body)", "msg/s", True),
    Metric("L ping", "raw two-process BRPOP/LPUSH ping-pong p50", "ms", False, 3),
]
BY_KEY = {m.key: m for m in [*METRICS, *LIMITS]}


@dataclass
class Cell:
    values: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    config: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None


@dataclass
class Results:
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # entrant labels, first seen first
    versions: dict[str, str] = field(default_factory=dict)  # label -> version or "not installed"

    def cell(self, metric: str, label: str) -> Cell:
        if label not in self.order:
            self.order.append(label)
        return self.cells.setdefault((metric, label), Cell())

    def add(self, metric: str, label: str, value: float, config: str, note: str = "") -> None:
        cell = self.cell(metric, label)
        cell.values.append(value)
        cell.config = config
        if note:
            cell.notes.append(note)

    def fail(self, metric: str, label: str, error: str, config: str = "") -> None:
        cell = self.cell(metric, label)
        cell.errors.append(error)
        cell.config = cell.config or config

    def median(self, metric: str, label: str) -> float | None:
        cell = self.cells.get((metric, label))
        return cell.median if cell else None

    def labels_for(self, metric: str) -> list[str]:
        return [label for label in self.order if (metric, label) in self.cells]

    def advantage(self, metric: str, other: str) -> float | None:
        """How many times better celeriac is than *other* (>1: celeriac better)."""
        mine, theirs = self.median(metric, "celeriac"), self.median(metric, other)
        if not mine or not theirs:
            return None
        return mine / theirs if BY_KEY[metric].higher_is_better else theirs / mine

    def fastest_peer(self, metric: str) -> str | None:
        best: tuple[float, str] | None = None
        higher = BY_KEY[metric].higher_is_better
        for label in self.labels_for(metric):
            value = self.median(metric, label)
            if label in ("celeriac", "raw") or value is None:
                continue
            score = value if higher else -value
            if best is None or score > best[0]:
                best = (score, label)
        return best[1] if best else None


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def cell_text(results: Results, metric: Metric, label: str) -> str:
    cell = results.cells.get((metric.key, label))
    if cell is None:
        return "-"
    if cell.values:
        text = fmt(cell.median, metric.digits)
        if cell.notes:
            text += "*"
        return text
    if cell.errors:
        first = cell.errors[0].splitlines()[0]
        return "n/a" if "n/a" in first or "no " in first else "failed"
    return "-"


# targets from issue 8, judged on the medians of one run
def _ratio_at_least(metric: str, other: str, factor: float) -> Callable[[Results], bool | None]:
    def check(r: Results) -> bool | None:
        value = r.advantage(metric, other)
        return None if value is None else value >= factor

    return check


def _fastest_at_least(metric: str, factor: float) -> Callable[[Results], bool | None]:
    def check(r: Results) -> bool | None:
        peer = r.fastest_peer(metric)
        value = r.advantage(metric, peer) if peer else None
        return None if value is None else value >= factor

    return check


def _absolute(metric: str, limit: float) -> Callable[[Results], bool | None]:
    def check(r: Results) -> bool | None:
        value = r.median(metric, "celeriac")
        if value is None:
            return None
        return value >= limit if BY_KEY[metric].higher_is_better else value <= limit

    return check


def _vs_raw(metric: str, raw: str, factor: float) -> Callable[[Results], bool | None]:
    """At least *factor* x the raw figure (tasks/s), or at most that (ms)."""

    def check(r: Results) -> bool | None:
        mine, limit = r.median(metric, "celeriac"), r.median(raw, "raw")
        if mine is None or limit is None:
            return None
        return mine >= factor * limit if BY_KEY[metric].higher_is_better else mine <= factor * limit

    return check


def _ratio_text(metric: str, other: str) -> Callable[[Results], str]:
    return lambda r: fmt_ratio(r.advantage(metric, other))


def _fastest_text(metric: str) -> Callable[[Results], str]:
    def text(r: Results) -> str:
        peer = r.fastest_peer(metric)
        return f"{fmt_ratio(r.advantage(metric, peer))} ({peer})" if peer else "-"

    return text


def _value_text(metric: str) -> Callable[[Results], str]:
    m = BY_KEY[metric]
    return lambda r: f"{fmt(r.median(metric, 'celeriac'), m.digits)} {m.unit}"


def _raw_text(metric: str, raw: str) -> Callable[[Results], str]:
    def text(r: Results) -> str:
        mine, limit = r.median(metric, "celeriac"), r.median(raw, "raw")
        if mine is None or limit is None:
            return "-"
        digits = BY_KEY[metric].digits
        return (
            f"{fmt(mine, digits)} vs {fmt(limit, digits)} {BY_KEY[metric].unit} "
            f"({mine / limit:.2f}x)"
        )

    return text


Check = Callable[[Results], bool | None]
Shown = Callable[[Results], str]

TARGETS: list[tuple[str, Check, Shown]] = [
    ("W1 >= 4x Celery", _ratio_at_least("W1", "celery", 4), _ratio_text("W1", "celery")),
    (
        "W1 within 10% of raw one-by-one LPUSH",
        _vs_raw("W1", "L lpush", 0.9),
        _raw_text("W1", "L lpush"),
    ),
    ("W1 bulk >= 100,000 tasks/s", _absolute("W1 bulk", 100_000), _value_text("W1 bulk")),
    ("W2 >= 5x Celery solo", _ratio_at_least("W2", "celery", 5), _ratio_text("W2", "celery")),
    ("W2 >= 2.5x the fastest peer", _fastest_at_least("W2", 2.5), _fastest_text("W2")),
    (
        "W2 faster than the naive raw consumer",
        _vs_raw("W2", "L naive", 1.0),
        _raw_text("W2", "L naive"),
    ),
    (
        "W2b >= 5x Celery prefork -c 2",
        _ratio_at_least("W2b", "celery", 5),
        _ratio_text("W2b", "celery"),
    ),
    ("W2b >= 1.5x the fastest peer", _fastest_at_least("W2b", 1.5), _fastest_text("W2b")),
    ("W3 p50 <= 0.5 ms", _absolute("W3 p50", 0.5), _value_text("W3 p50")),
    ("W3 p99 <= 1 ms", _absolute("W3 p99", 1.0), _value_text("W3 p99")),
    # the issue derives 0.5 ms from its machine: a third of Celery's p50 and 2.5x the raw
    # ping-pong there; the same two bases, measured on this machine in this run
    (
        "W3 p50 <= a third of Celery's (basis of 0.5 ms)",
        _ratio_at_least("W3 p50", "celery", 3),
        _ratio_text("W3 p50", "celery"),
    ),
    (
        "W3 p50 <= 2.5x the raw ping-pong p50 (basis of 0.5 ms)",
        _vs_raw("W3 p50", "L ping", 2.5),
        _raw_text("W3 p50", "L ping"),
    ),
    ("W4 <= 30 MiB with one slot (RSS sum)", _absolute("W4 1", 30), _value_text("W4 1")),
    (
        "W4 <= 30 MiB with one slot (PSS sum: shared pages counted once)",
        _absolute("W4 1 pss", 30),
        _value_text("W4 1 pss"),
    ),
    ("W4 <= 110 MiB with prefork -c 4 (RSS sum)", _absolute("W4 4", 110), _value_text("W4 4")),
    (
        "W4 <= 110 MiB with prefork -c 4 (PSS sum: shared pages counted once)",
        _absolute("W4 4 pss", 110),
        _value_text("W4 4 pss"),
    ),
    ("W5 >= 4x Celery", _ratio_at_least("W5", "celery", 4), _ratio_text("W5", "celery")),
]


def machine() -> dict[str, str]:
    import psutil

    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def summary_rows(results: Results) -> list[list[str]]:
    rows = []
    for metric in METRICS:
        labels = results.labels_for(metric.key)
        if not labels:
            continue
        peer = results.fastest_peer(metric.key)
        rows.append(
            [
                metric.title,
                metric.unit,
                cell_text(results, metric, "celeriac"),
                cell_text(results, metric, "celery"),
                f"{peer}: {cell_text(results, metric, peer)}" if peer else "-",
                fmt_ratio(results.advantage(metric.key, "celery")),
                fmt_ratio(results.advantage(metric.key, peer) if peer else None),
            ]
        )
    return rows


def detail_rows(results: Results) -> list[list[str]]:
    rows = []
    for metric in [*METRICS, *LIMITS]:
        for label in results.labels_for(metric.key):
            cell = results.cells[(metric.key, label)]
            rounds = ", ".join(fmt(v, metric.digits) for v in cell.values) or "-"
            rows.append(
                [
                    metric.title,
                    label,
                    cell_text(results, metric, label),
                    rounds,
                    metric.unit,
                    cell.config,
                ]
            )
    return rows


def problem_lines(results: Results) -> list[str]:
    lines = []
    for (metric, label), cell in results.cells.items():
        for note in dict.fromkeys(cell.notes):
            lines.append(f"{BY_KEY[metric].title} / {label}: {note}")
        for error in dict.fromkeys(cell.errors):
            lines.append(f"{BY_KEY[metric].title} / {label}: {error.splitlines()[0]}")
    return lines


def target_rows(results: Results) -> list[list[str]]:
    rows = []
    for title, check, shown in TARGETS:
        verdict = check(results)
        if verdict is None:
            continue
        rows.append([title, shown(results), "met" if verdict else "NOT met"])
    return rows


def matrix_rows(results: Results) -> tuple[list[str], list[list[str]]]:
    """Every library's median for every workload: one column per library (and variant)."""
    labels = [label for label in results.order if label != "raw"]
    rows = []
    for metric in METRICS:
        if not results.labels_for(metric.key):
            continue
        rows.append([metric.title, metric.unit, *(cell_text(results, metric, lb) for lb in labels)])
    return ["workload", "unit", *labels], rows


def ratio_rows(results: Results) -> tuple[list[str], list[list[str]]]:
    """celeriac's advantage over each library, workload by workload."""
    labels = [label for label in results.order if label not in ("raw", "celeriac")]
    rows = []
    for metric in METRICS:
        if not results.labels_for(metric.key):
            continue
        rows.append(
            [metric.title, *(fmt_ratio(results.advantage(metric.key, lb)) for lb in labels)]
        )
    return ["celeriac vs", *labels], rows


SUMMARY_HEAD = [
    "workload",
    "unit",
    "celeriac",
    "Celery",
    "fastest peer",
    "vs Celery",
    "vs fastest",
]
DETAIL_HEAD = ["workload", "library", "median", "rounds", "unit", "configuration"]
TARGET_HEAD = ["target", "celeriac (median)", "verdict"]


def text_table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=False)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=False))]
    out.append("  ".join("-" * w for w in widths))
    for row in rows:
        out.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)))
    return "\n".join(out)


def md_table(head: list[str], rows: list[list[str]]) -> str:
    def esc(text: str) -> str:
        return str(text).replace("|", "\\|")

    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


RATIO_NOTE = (
    "Ratios are celeriac's advantage from the medians: celeriac / other for tasks/s, "
    "other / celeriac for ms and MiB, so above 1x means celeriac is better. "
    "The fastest peer is the best non-celeriac entry (Celery and tuned variants included). "
    "`*` marks a partial figure (the library did not finish within the time cap)."
)


def render_text(results: Results) -> str:
    parts = ["", text_table(SUMMARY_HEAD, summary_rows(results)), "", RATIO_NOTE]
    limits = [r for r in detail_rows(results) if r[1] == "raw"]
    if limits:
        parts += ["", "Redis limit (raw redis-py + hiredis):", text_table(DETAIL_HEAD, limits)]
    head, rows = matrix_rows(results)
    if rows:
        parts += ["", "Every library (medians):", text_table(head, rows)]
    targets = target_rows(results)
    if targets:
        parts += ["", "Targets (issue 8):", text_table(TARGET_HEAD, targets)]
    problems = problem_lines(results)
    if problems:
        parts += ["", "Notes:", *(f"  - {line}" for line in problems)]
    return "\n".join(parts)


def render_markdown(
    results: Results,
    command: str,
    settings: dict[str, str],
    redis_version: str,
    peer_notes: list[str],
) -> str:
    info = machine()
    lines = [
        "# celeriac benchmark results",
        "",
        f"Generated by `{command}` on {info['date']}.",
        "",
        "## Machine",
        "",
        f"- CPU: {info['cpu']} ({info['cores']} cores)",
        f"- RAM: {info['ram']}",
        f"- OS: {info['os']}, Python {info['python']}, redis-server {redis_version} "
        "(started by the benchmark on a loopback port, no persistence)",
        "- The machine's 2 cores are shared with other work: figures are noisy; "
        "compare the ratios within one run rather than absolute numbers across runs.",
        "",
        "## Run",
        "",
        *(f"- {k}: {v}" for k, v in settings.items()),
        "",
        "## Libraries",
        "",
        md_table(["library", "version"], [[k, v] for k, v in results.versions.items()]),
        "",
        *(f"- {note}" for note in peer_notes),
        "",
        "## Summary (medians)",
        "",
        md_table(SUMMARY_HEAD, summary_rows(results)),
        "",
        RATIO_NOTE,
        "",
    ]
    head, rows = matrix_rows(results)
    if rows:
        lines += ["## Every library (medians)", "", md_table(head, rows), ""]
    head, rows = ratio_rows(results)
    if rows:
        lines += ["## celeriac's advantage over each library", "", md_table(head, rows), ""]
    limits = [r for r in detail_rows(results) if r[1] == "raw"]
    if limits:
        lines += [
            "## The Redis limit (raw redis-py + hiredis, same server)",
            "",
            md_table(DETAIL_HEAD, limits),
            "",
        ]
    targets = target_rows(results)
    if targets:
        lines += ["## Targets (issue 8)", "", md_table(TARGET_HEAD, targets), ""]
    lines += ["## Every figure", "", md_table(DETAIL_HEAD, detail_rows(results)), ""]
    problems = problem_lines(results)
    if problems:
        lines += ["## Notes and failures", "", *(f"- {p}" for p in problems), ""]
    return "\n".join(lines)
