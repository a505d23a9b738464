"""Tasks for the growth tests and soaks (tests/integration/test_growth.py, bench/soak_rss.py,
bench/sqlite_contention.py); imported by worker subprocesses (broker from
CELERIAC_BROKER_URL). ``TEST_RESULT_EXPIRES`` sets result_expires in seconds."""

from __future__ import annotations

import os

from celeriac import Celery

app = Celery("growth_tasks")
if os.environ.get("TEST_RESULT_EXPIRES"):
    app.conf.result_expires = float(os.environ["TEST_RESULT_EXPIRES"])


@app.task(name="growth.noop", ignore_result=True)
def noop() -> None:
    """Nothing at all: what grows here is the worker's own bookkeeping."""


@app.task(name="growth.stored")
def stored(index: int) -> int:
    """A result stored in the backend (it expires after result_expires)."""
    return index
