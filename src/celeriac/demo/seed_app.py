"""The seed's app, as ``celeriac -A celeriac.demo.seed_app worker`` loads it.

It mirrors ``examples/seed_project/celery_app.py``: the app is named ``celery_app``, its task
names are the seed's (``tasks.basic_tasks.add``, ...) and the seed's routes send each module
to its own queue. The broker comes from ``CELERIAC_BROKER_URL``, which the demo sets for
every worker it starts.
"""

from __future__ import annotations

from celeriac.app import Celery

QUEUES = ("basic", "advanced", "realworld")

ROUTES = {
    "tasks.basic_tasks.*": {"queue": "basic"},
    "tasks.advanced_tasks.*": {"queue": "advanced"},
    "tasks.realworld_tasks.*": {"queue": "realworld"},
}

app = Celery("celery_app", include=["celeriac.demo.seed_tasks"], task_routes=ROUTES)
