"""How many messages a consumer holds: Celery's count, deeper while tasks are short.

Celery reserves ``concurrency × worker_prefetch_multiplier`` messages. For tasks of a few
hundred microseconds that means a broker round trip every few tasks. ``worker_prefetch_window``
(seconds of work, by the recent pace) lets a consumer hold more while that much work is still
short: at 200 µs a task and 10 ms, 50 messages. A slow batch brings it back down at once, so a
worker never sits on more than about a window's worth of work that others could have taken.
``worker_prefetch_multiplier = 1`` (Celery's "fair" setting) and a window of 0 turn it off.
"""

from __future__ import annotations

MAX_HELD = 64  # never more at once, however short the tasks: one fetch stays ~1 ms of Redis


class PrefetchWindow:
    """Tracks the pace of finished batches and says how deep the next fetch may go."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._per_task_s: float | None = None
        self._batch_started = 0.0
        self._batch_size = 0

    def target(self, floor: int) -> int:
        """Messages to hold: *floor* (Celery's count), or more while tasks are short."""
        per_task = self._per_task_s
        if self.window_s <= 0 or per_task is None or floor <= 1:
            return floor
        return max(floor, min(MAX_HELD, int(self.window_s / max(per_task, 1e-6))))

    def fetched(self, count: int, asked_s: float, now_s: float) -> None:
        """A fetch asked at *asked_s* (monotonic) brought *count* messages at *now_s*: the
        batch before it took ``asked_s`` minus its own start, which gives the pace."""
        if self._batch_size:
            pace = max(0.0, asked_s - self._batch_started) / self._batch_size
            previous = self._per_task_s
            # a slower batch counts at once; a faster one moves the pace halfway
            if previous is None or pace > previous:
                self._per_task_s = pace
            else:
                self._per_task_s = (previous + pace) / 2
        self._batch_started = now_s
        self._batch_size = count

    def idle(self) -> None:
        """The queue ran dry: the next batch's pace starts from its own fetch."""
        self._batch_size = 0
