"""W4: an idle worker's memory, summed over all its processes (RSS, and PSS for sharing)."""

from __future__ import annotations

import time

import psutil

from ..harness import Entrant, Failed, Harness, NotApplicable
from ..peers import load
from ..report import Results

MIB = 2**20


def measure(h: Harness, entrant: Entrant, results: Results, mode: str, key: str) -> None:
    peer = load(entrant.peer)
    config = peer.worker_note(mode, entrant.tuned)
    h.flush()
    try:
        h.client(entrant.peer, "fill", n=1)  # one task run proves the worker is up
        worker = h.start_worker(entrant, mode, results=False)
    except (NotApplicable, Failed) as exc:
        for metric in (key, f"{key} pss"):
            results.fail(metric, entrant.label, str(exc), config)
        return
    try:
        h.wait_done(worker, 1, timeout_s=60)
        time.sleep(h.options.settle_s)
        rss = pss = 0
        procs = worker.tree()
        for proc in procs:
            try:
                info = proc.memory_full_info()
            except psutil.NoSuchProcess:
                continue
            rss += info.rss
            pss += info.pss
    except Failed as exc:
        for metric in (key, f"{key} pss"):
            results.fail(metric, entrant.label, str(exc), config)
        return
    finally:
        h.stop(worker)
        h.flush()
    note = f"{len(procs)} processes"
    results.add(key, entrant.label, rss / MIB, f"{config} ({note})")
    results.add(f"{key} pss", entrant.label, pss / MIB, f"{config} ({note})")


def run(h: Harness, entrant: Entrant, results: Results) -> None:
    measure(h, entrant, results, "one", "W4 1")
    measure(h, entrant, results, "multi4", "W4 4")
