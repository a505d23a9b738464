"""W2, W2b, W5: N tasks queued first, then one worker drains them.

Timed from the first task started to the last task finished, as the tasks count themselves
(bench/apps/counter.py), so worker start-up and the enqueue are not in the figure.
"""

from __future__ import annotations

from ..harness import Entrant, Failed, Harness, NotApplicable
from ..peers import load
from ..report import Results


def drain(
    h: Harness, entrant: Entrant, results: Results, key: str, mode: str, with_results: bool
) -> None:
    peer = load(entrant.peer)
    config = peer.worker_note(mode, entrant.tuned)
    n = h.options.n
    h.flush()
    try:
        h.client(entrant.peer, "fill", n=n, results=with_results, tuned=entrant.tuned)
        worker = h.start_worker(entrant, mode, with_results)
    except (NotApplicable, Failed) as exc:
        results.fail(key, entrant.label, str(exc), config)
        return
    try:
        done = h.wait_done(worker, n, h.options.drain_timeout_s)
    except Failed as exc:
        results.fail(key, entrant.label, str(exc), config)
        return
    finally:
        h.stop(worker)
        h.flush()
    note = ""
    if done.partial:
        note = f"partial: {done.count}/{n} tasks before the {h.options.drain_timeout_s:.0f}s cap"
    results.add(key, entrant.label, done.rate, config, note)


def run_one_slot(h: Harness, entrant: Entrant, results: Results) -> None:
    drain(h, entrant, results, "W2", "one", with_results=False)


def run_best2(h: Harness, entrant: Entrant, results: Results) -> None:
    drain(h, entrant, results, "W2b", "best2", with_results=False)


def run_with_results(h: Harness, entrant: Entrant, results: Results) -> None:
    drain(h, entrant, results, "W5", "one", with_results=True)
