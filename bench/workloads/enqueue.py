"""W1: send N no-op tasks from one client process with no worker running."""

from __future__ import annotations

from ..harness import Entrant, Failed, Harness, NotApplicable
from ..peers import load
from ..report import Results


def run(h: Harness, entrant: Entrant, results: Results) -> None:
    peer = load(entrant.peer)
    n = h.options.n
    for bulk, key in ((False, "W1"), (True, "W1 bulk")):
        config = peer.bulk_note if bulk else "one call per task (delay/send/enqueue)"
        h.flush()
        try:
            answer = h.client(entrant.peer, "enqueue", n=n, bulk=bulk)
        except (NotApplicable, Failed) as exc:
            results.fail(key, entrant.label, str(exc), config)
            continue
        seconds = answer["seconds"]
        if seconds is None:
            results.fail(key, entrant.label, f"n/a: {peer.bulk_note}", config)
            continue
        assert isinstance(seconds, (int, float))
        results.add(key, entrant.label, n / seconds, config)
    h.flush()
