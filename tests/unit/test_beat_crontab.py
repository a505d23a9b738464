"""The runs a beat actually sends for a crontab, checked against the due times the real
``celery.schedules.crontab`` gives for the same expression and time zone (the expressions of
test_schedules, run through the beat loop instead of asked one at a time)."""

from __future__ import annotations

from datetime import datetime, timezone

import celery
import pytest
from celery.schedules import crontab as celery_crontab

from celeriac import Celery
from celeriac.beat import Beat, slot_task_id
from celeriac.schedules import crontab
from tests.unit.helpers import take_envelopes
from tests.unit.test_schedules import EXPRESSIONS

START = datetime(2026, 6, 1, 8, 17, 42, tzinfo=timezone.utc)
RUNS = 8


class Clock:
    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def celery_due_times(expression: dict[str, object], zone: str, count: int) -> list[datetime]:
    capp = celery.Celery(set_as_current=False)
    capp.conf.timezone = zone
    theirs = celery_crontab(app=capp, **expression)  # type: ignore[arg-type]
    found, last = [], START
    for _ in range(count):
        start, delta, _now = theirs.remaining_delta(last)
        last = start + delta
        found.append(last)
    return found


@pytest.mark.parametrize("zone", ["UTC", "Europe/London", "America/New_York"])
def test_beat_sends_each_crontab_run_when_celery_would(app: Celery, zone: str) -> None:
    app.conf.timezone = zone
    for index, expression in enumerate(EXPRESSIONS):
        name = f"cron{index}"
        app.conf.beat_schedule = {name: {"task": "unit.c", "schedule": crontab(**expression)}}  # type: ignore[arg-type]
        expected = celery_due_times(expression, zone, RUNS)
        clock = Clock(START.timestamp())
        beat = Beat(app, clock=clock, max_interval_s=400 * 86400)
        sent: list[str] = []
        while len(sent) < RUNS:
            clock.now_s += beat.tick() + 0.5  # wake when asked, a little late
            sent += [envelope["headers"]["id"] for envelope in take_envelopes(app)]
        assert sent == [slot_task_id(name, due.timestamp()) for due in expected], expression
