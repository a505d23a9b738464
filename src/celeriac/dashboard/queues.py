"""Queue lengths per priority and dead letters, over the broker's own methods."""

from __future__ import annotations

from typing import Any

from ..brokers.base import PRIORITY_STEPS, priority_key


def lengths_by_priority(broker: Any, queue: str) -> dict[int, int]:
    """{priority: waiting messages} (the priorities that hold any; ``{0: 0}`` when empty)."""
    client = getattr(broker, "client", None)
    database = getattr(broker, "database", None)
    found: dict[int, int] = {}
    if client is not None:
        pipe = client.pipeline(transaction=False)
        for step in PRIORITY_STEPS:
            pipe.llen(priority_key(queue, step))
        for step, count in zip(PRIORITY_STEPS, pipe.execute(), strict=True):
            if int(count):
                found[int(step)] = int(count)
    elif database is not None:
        with database.read() as conn:
            rows = conn.execute(
                "SELECT priority, COUNT(*) FROM celeriac_messages "
                "WHERE state = 0 AND queue = ? GROUP BY priority",
                (queue,),
            ).fetchall()
        found = {int(p): int(n) for p, n in rows if int(n)}
    else:
        total = int(broker.queue_length(queue))
        found = {0: total} if total else {}
    return found or {0: 0}


def dead_count(broker: Any, queue: str) -> int | None:
    try:
        return int(broker.dead_letter_count(queue))
    except (NotImplementedError, AttributeError):  # a broker that keeps no dead letters
        return None
