"""The seed's app: three task modules, each routed to a queue of its own.

The broker is not named here: celeriac reads CELERIAC_BROKER_URL (set it to
redis://127.0.0.1:6379/0 for Redis) and falls back to its embedded SQLite default,
sqlite:///celeriac.sqlite3 in the working directory. Results go to the same place.
"""

from celeriac import Celery

app = Celery(
    "celery_app",
    include=["tasks.basic_tasks", "tasks.advanced_tasks", "tasks.realworld_tasks"],
)

app.conf.task_routes = {
    "tasks.basic_tasks.*": {"queue": "basic"},
    "tasks.advanced_tasks.*": {"queue": "advanced"},
    "tasks.realworld_tasks.*": {"queue": "realworld"},
}
