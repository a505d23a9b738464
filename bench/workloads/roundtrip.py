"""W3: one idle worker with results on; sequential send-and-wait, p50 and p99."""

from __future__ import annotations

import statistics

from ..harness import Entrant, Failed, Harness, NotApplicable
from ..peers import load
from ..report import Results


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def run(h: Harness, entrant: Entrant, results: Results) -> None:
    peer = load(entrant.peer)
    config = peer.worker_note("one", entrant.tuned)
    if entrant.tuned:
        config += f"; tuned: {peer.tuned_note}"
    h.flush()
    try:
        worker = h.start_worker(entrant, "one", results=True)
    except NotApplicable as exc:
        for key in ("W3 p50", "W3 p99"):
            results.fail(key, entrant.label, str(exc), config)
        return
    try:
        answer = h.client(
            entrant.peer,
            "roundtrip",
            results=True,
            tuned=entrant.tuned,
            n=h.options.roundtrips,
            timeout_s=h.options.budget_s + 120,
        )
    except (NotApplicable, Failed) as exc:
        for key in ("W3 p50", "W3 p99"):
            results.fail(key, entrant.label, f"{exc}\n{worker.log_tail()}", config)
        return
    finally:
        h.stop(worker)
        h.flush()
    latencies = answer["latencies"]
    assert isinstance(latencies, list)
    note = ""
    if len(latencies) < h.options.roundtrips:
        note = f"partial: {len(latencies)}/{h.options.roundtrips} round trips in the time budget"
    ms = [x * 1000 for x in latencies]
    results.add("W3 p50", entrant.label, statistics.median(ms), config, note)
    results.add("W3 p99", entrant.label, percentile(ms, 0.99), config, note)
