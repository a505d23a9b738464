"""Celery's "First steps with Django" layout (examples/django_project) on a real worker.

Real parts: Django from PyPI with SQLite, and Debian's PostgreSQL started for this session;
``celeriac -A proj worker -P prefork -c 2`` as a subprocess on the session's redis-server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celeriac
from tests.support.postgres import PostgresServer, PostgresUnavailable, start_postgres
from tests.support.redis_server import RedisServer
from tests.support.workers import ROOT, WorkerProcess

EXAMPLE = ROOT / "examples" / "django_project"
TASK_TIMEOUT_S = 20.0
WORKER = (sys.executable, "-m", "celeriac", "-A", "proj", "worker", "-P", "prefork", "-c", "2")
MAX_SENT = 60  # tasks sent, at most, until both children have run some
PG_DB = 4  # the PostgreSQL workers' broker database (results on 5): the SQLite worker uses 0


# --- the project, its database and its worker ---------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the example, so tests can break files and keep their databases apart."""
    target = tmp_path_factory.mktemp("django") / "django_project"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    return target


def project_env(redis_server: RedisServer, db: int = 0, **extra: str) -> dict[str, str]:
    """The environment a user's shell would have: settings come from proj/settings.py.
    Broker on redis database *db*, results on the next one."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CELERIAC_", "CELERY_", "POSTGRES_", "DJANGO_"))
    }
    env["PYTHONPATH"] = str(ROOT / "src")
    env["PYTHONUNBUFFERED"] = "1"
    env["CELERY_BROKER_URL"] = redis_server.url(db)
    env["CELERY_RESULT_BACKEND"] = redis_server.url(db + 1)
    env.update(extra)
    return env


def manage(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def start_worker(project: Path, env: dict[str, str], *extra: str) -> WorkerProcess:
    """``celeriac -A proj worker -P prefork -c 2`` in the project directory, once ready."""
    fd, log_name = tempfile.mkstemp(prefix="django-worker-", suffix=".log")
    with os.fdopen(fd, "wb") as log:
        process = subprocess.Popen(
            [*WORKER, *extra],
            cwd=project,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    worker = WorkerProcess(process, Path(log_name))
    try:
        worker.wait_for_log("ready.")
        worker.wait_for_log("child 1 started")
    except BaseException:
        worker.stop()
        raise
    return worker


def run_worker_to_exit(project: Path, env: dict[str, str], *extra: str) -> tuple[int, str]:
    """A worker expected to fail at start-up: its exit code and everything it printed."""
    done = subprocess.run(
        [*WORKER, *extra],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.fixture
def client(redis_url: str, backend_url: str) -> Iterator[Celeriac]:
    app = Celeriac("django-test-client", broker=redis_url, backend=backend_url)
    yield app
    app.close()


def place_orders_until_both_children_ran(client: Celeriac, item: str) -> list[dict[str, Any]]:
    """Send place_order in small batches until two different children have run one; the
    split between idle children is the broker's, so no fixed count guarantees it."""
    results: list[dict[str, Any]] = []
    while len(results) < MAX_SENT:
        batch = [client.send_task("orders.tasks.place_order", (item, 1)) for _ in range(4)]
        results += [r.get(timeout=TASK_TIMEOUT_S) for r in batch]
        if len({r["pid"] for r in results}) >= 2:
            return results
    raise AssertionError(f"one child ran all {len(results)} tasks: {results}")


# --- SQLite --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_env(project: Path, redis_server: RedisServer) -> dict[str, str]:
    env = project_env(redis_server, DJANGO_SQLITE_PATH=str(project / "db.sqlite3"))
    migrated = manage(project, env, "migrate", "-v", "0")
    assert migrated.returncode == 0, migrated.stderr
    return env


@pytest.fixture(scope="module")
def sqlite_worker(project: Path, sqlite_env: dict[str, str]) -> Iterator[WorkerProcess]:
    worker = start_worker(project, sqlite_env)
    yield worker
    worker.stop()


def sqlite_rows(project: Path, item: str) -> list[tuple[int, int]]:
    import sqlite3

    with sqlite3.connect(project / "db.sqlite3") as db:
        return db.execute(
            "SELECT id, worker_pid FROM orders_order WHERE item = ? ORDER BY id", (item,)
        ).fetchall()


def test_autodiscover_with_no_arguments_finds_tasks_of_installed_apps(
    sqlite_worker: WorkerProcess,
) -> None:
    log = sqlite_worker.log()
    assert "orders.tasks.place_order" in log
    assert "orders.tasks.count_orders" in log


def test_prefork_children_write_orm_rows_to_sqlite(
    project: Path, sqlite_worker: WorkerProcess, client: Celeriac
) -> None:
    results = place_orders_until_both_children_ran(client, "sqlite-tea")
    children = {child.pid for child in sqlite_worker.children()}
    assert {r["pid"] for r in results} <= children
    assert sqlite_rows(project, "sqlite-tea") == sorted((r["order"], r["pid"]) for r in results)


def test_a_task_counts_rows_through_the_orm(sqlite_worker: WorkerProcess, client: Celeriac) -> None:
    placed = client.send_task("orders.tasks.place_order", ("count-me", 1)).get(TASK_TIMEOUT_S)
    count = client.send_task("orders.tasks.count_orders").get(TASK_TIMEOUT_S)
    assert count >= placed["order"] >= 1


CONFIGURED_SCRIPT = """
import json
from django.conf import settings

settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "orders"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    CELERY_BROKER_URL="memory://configured",
)
from celeriac import Celery

app = Celery("configured")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
modules = app.import_task_modules()
print(json.dumps({"broker": app.conf.broker_url, "modules": modules}))
"""


def test_reading_django_settings_switches_django_on_without_the_variable(
    project: Path, redis_server: RedisServer
) -> None:
    """settings.configure() instead of DJANGO_SETTINGS_MODULE: the worker still sets Django
    up before importing, and autodiscovery still searches INSTALLED_APPS."""
    done = subprocess.run(
        [sys.executable, "-c", CONFIGURED_SCRIPT],
        cwd=project,
        env=project_env(redis_server),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"broker": "memory://configured", "modules": ["orders.tasks"]}


# --- delay_on_commit -----------------------------------------------------------------------

ON_COMMIT_SCRIPT = """
import json
import redis
from django.conf import settings
from django.db import transaction
from orders.tasks import place_order

queue = redis.Redis.from_url(settings.CELERY_BROKER_URL)
seen = {}
with transaction.atomic():
    seen["returned"] = place_order.delay_on_commit("committed")
    place_order.apply_async_on_commit(("committed-async",), countdown=0)
    seen["inside"] = queue.llen("celery")
seen["after_commit"] = queue.llen("celery")
try:
    with transaction.atomic():
        place_order.delay_on_commit("rolled back")
        raise RuntimeError("roll back")
except RuntimeError:
    pass
seen["after_rollback"] = queue.llen("celery")
transaction.on_commit(lambda: place_order.delay("autocommit"))
seen["outside_a_transaction"] = queue.llen("celery")
print(json.dumps(seen))
"""


def test_delay_on_commit_sends_only_after_commit_and_never_after_rollback(
    project: Path, sqlite_env: dict[str, str], redis_server: RedisServer, redis_url: str
) -> None:
    # a broker database of its own: the module's worker consumes db 0
    env = {**sqlite_env, "CELERY_BROKER_URL": redis_server.url(2)}  # nobody consumes db 2
    done = manage(project, env, "shell", "-c", ON_COMMIT_SCRIPT)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {
        "returned": None,
        "inside": 0,
        "after_commit": 2,
        "after_rollback": 2,
        "outside_a_transaction": 3,
    }
    sent = [
        json.loads(m)["headers"]["argsrepr"] for m in redis_server.client(2).lrange("celery", 0, -1)
    ]
    assert sorted(sent) == sorted(["('committed',)", "('committed-async',)", "('autocommit',)"])


# --- bad input: one line, then a non-zero exit ----------------------------------------------


def broken_copy(project: Path, tmp_path: Path) -> Path:
    target = tmp_path / "broken_project"
    shutil.copytree(project, target, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    return target


def assert_one_line(output: str, *parts: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    for part in parts:
        assert part in lines[0], output
    return lines[0]


def test_a_broken_tasks_module_stops_the_worker_with_one_line(
    project: Path, sqlite_env: dict[str, str], tmp_path: Path
) -> None:
    broken = broken_copy(project, tmp_path)
    tasks = broken / "orders" / "tasks.py"
    tasks.write_text(tasks.read_text() + "\nraise RuntimeError('half-written task module')\n")
    line_no = len(tasks.read_text().splitlines())
    code, output = run_worker_to_exit(broken, sqlite_env)
    assert code != 0
    assert_one_line(
        output,
        "orders.tasks",
        "RuntimeError: half-written task module",
        f'tasks.py", line {line_no}',
    )


def test_debug_log_level_shows_the_traceback_of_a_broken_tasks_module(
    project: Path, sqlite_env: dict[str, str], tmp_path: Path
) -> None:
    broken = broken_copy(project, tmp_path)
    tasks = broken / "orders" / "tasks.py"
    tasks.write_text(tasks.read_text() + "\nraise RuntimeError('half-written task module')\n")
    code, output = run_worker_to_exit(broken, sqlite_env, "-l", "debug")
    assert code != 0
    assert "Traceback (most recent call last)" in output
    assert "RuntimeError: half-written task module" in output


def test_missing_django_settings_module_is_one_line_with_the_hint(
    project: Path, sqlite_env: dict[str, str], tmp_path: Path
) -> None:
    broken = broken_copy(project, tmp_path)
    app_module = broken / "proj" / "celery.py"
    text = app_module.read_text()
    setdefault = 'os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")\n'
    assert setdefault in text
    app_module.write_text(text.replace(setdefault, ""))
    code, output = run_worker_to_exit(broken, sqlite_env)
    assert code != 0
    assert_one_line(output, "'proj'", "ImproperlyConfigured", "set DJANGO_SETTINGS_MODULE")


def test_models_imported_before_django_is_set_up_is_one_line_with_the_hint(
    project: Path, sqlite_env: dict[str, str], tmp_path: Path
) -> None:
    broken = broken_copy(project, tmp_path)
    app_module = broken / "proj" / "celery.py"
    app_module.write_text(app_module.read_text() + "\nfrom orders.models import Order\n")
    code, output = run_worker_to_exit(broken, sqlite_env)
    assert code != 0
    assert_one_line(
        output, "AppRegistryNotReady", "celery.py", "django.setup()", "DJANGO_SETTINGS_MODULE"
    )


def test_debug_log_level_shows_the_traceback_of_an_app_module_that_fails(
    project: Path, sqlite_env: dict[str, str], tmp_path: Path
) -> None:
    broken = broken_copy(project, tmp_path)
    app_module = broken / "proj" / "celery.py"
    app_module.write_text(app_module.read_text() + "\nfrom orders.models import Order\n")
    code, output = run_worker_to_exit(broken, sqlite_env, "-l", "debug")
    assert code != 0
    assert "Traceback (most recent call last)" in output
    assert "AppRegistryNotReady" in output


# --- PostgreSQL: one session per prefork child ----------------------------------------------


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL could not start here: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pg_database(project: Path, postgres: PostgresServer, redis_server: RedisServer) -> str:
    postgres.create_database("orders")
    env = project_env(redis_server, POSTGRES_PORT=str(postgres.port))
    migrated = manage(project, env, "migrate", "-v", "0")
    assert migrated.returncode == 0, migrated.stderr
    return "orders"


@pytest.fixture
def pg_worker(
    project: Path, postgres: PostgresServer, pg_database: str, redis_server: RedisServer
) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(conn_max_age: str, where: Path = project, **extra: str) -> WorkerProcess:
        env = project_env(
            redis_server,
            PG_DB,
            POSTGRES_PORT=str(postgres.port),
            DJANGO_CONN_MAX_AGE=conn_max_age,
            **extra,
        )
        worker = start_worker(where, env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def pg_client(redis_server: RedisServer, redis_url: str) -> Iterator[Celeriac]:
    app = Celeriac("django-pg-client", broker=redis_server.url(PG_DB))
    app.conf.result_backend = redis_server.url(PG_DB + 1)
    yield app
    app.close()


def sessions_of_others(postgres: PostgresServer, database: str) -> set[int]:
    import psycopg

    with psycopg.connect(postgres.dsn(database)) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return {row[0] for row in rows}


def test_each_prefork_child_uses_its_own_postgres_session(
    postgres: PostgresServer,
    pg_database: str,
    pg_worker: Callable[..., WorkerProcess],
    pg_client: Celeriac,
) -> None:
    worker = pg_worker("none")  # persistent connections: a child keeps its session
    results = place_orders_until_both_children_ran(pg_client, "pg-tea")
    sessions: dict[int, set[int]] = {}
    for result in results:
        assert result["session"]["vendor"] == "postgresql"
        sessions.setdefault(result["pid"], set()).add(result["session"]["backend_pid"])
    assert all(len(backends) == 1 for backends in sessions.values()), sessions
    (first,), (second,) = sessions.values()
    assert first != second
    # what the server sees: exactly the children's sessions; the manager holds none
    assert sessions_of_others(postgres, pg_database) == {first, second}
    assert worker.pid not in sessions


MANAGER_SESSION = """

from celeriac.signals import worker_ready


@worker_ready.connect
def open_a_session_in_the_manager(**kwargs):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        session = cursor.fetchone()[0]
    with open(os.environ["MANAGER_SESSION_FILE"], "w") as out:
        out.write(str(session))
"""


def test_children_forked_while_the_manager_holds_a_session_open_their_own(
    project: Path,
    postgres: PostgresServer,
    pg_database: str,
    pg_worker: Callable[..., WorkerProcess],
    pg_client: Celeriac,
    tmp_path: Path,
) -> None:
    """A worker_ready receiver queries in the manager, so the children are forked holding a
    copy of its session: each child must open its own and leave the manager's alone."""
    copy = tmp_path / "project"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    with open(copy / "proj" / "celery.py", "a") as app_module:
        app_module.write(MANAGER_SESSION)
    session_file = tmp_path / "manager-session"
    pg_worker("none", copy, MANAGER_SESSION_FILE=str(session_file))
    manager_session = int(session_file.read_text())
    results = place_orders_until_both_children_ran(pg_client, "pg-inherited")
    children_sessions = {r["session"]["backend_pid"] for r in results}
    assert len(children_sessions) == 2, results
    assert manager_session not in children_sessions
    # the children's clean-up sent nothing on the manager's socket: its session lives on
    assert sessions_of_others(postgres, pg_database) == {manager_session, *children_sessions}


def test_conn_max_age_zero_closes_the_session_after_each_task(
    pg_database: str, pg_worker: Callable[..., WorkerProcess], pg_client: Celeriac
) -> None:
    pg_worker("0")
    results = [
        pg_client.send_task("orders.tasks.place_order", ("pg-fresh", 1)).get(TASK_TIMEOUT_S)
        for _ in range(6)
    ]
    by_child: dict[int, list[int]] = {}
    for result in results:
        by_child.setdefault(result["pid"], []).append(result["session"]["backend_pid"])
    assert any(len(backends) > 1 for backends in by_child.values()), by_child
    for backends in by_child.values():
        assert len(set(backends)) == len(backends), by_child


FORK_SCRIPT = """
import json, os
import django
from django.db import connection
import proj
from celeriac import signals

django.setup()

def session():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]

before = session()
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:
    signals.worker_process_init.send(sender=None)  # what a prefork child does first
    os.write(write_end, json.dumps(session()).encode())
    os._exit(0)
os.waitpid(pid, 0)
child = json.loads(os.read(read_end, 100))
print(json.dumps({"before": before, "child": child, "after": session()}))
"""


def test_a_forked_child_drops_the_inherited_session_and_leaves_the_parents_open(
    project: Path, postgres: PostgresServer, pg_database: str, redis_server: RedisServer
) -> None:
    env = project_env(
        redis_server,
        POSTGRES_PORT=str(postgres.port),
        DJANGO_SETTINGS_MODULE="proj.settings",
        DJANGO_CONN_MAX_AGE="none",
    )
    done = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["child"] != seen["before"]  # the child opened its own session
    assert seen["after"] == seen["before"]  # and closing its copy did not end the parent's
