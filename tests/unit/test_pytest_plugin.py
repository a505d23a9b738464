"""The pytest plugin under Celery's fixture names, run as a user runs it (pytester), and
``start_worker``, the in-process worker behind it."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from celeriac import Celery
from celeriac.contrib.testing.app import TestApp, setup_default_app
from celeriac.contrib.testing.worker import start_worker
from celeriac.errors import BrokerError, ImproperlyConfigured

pytest_plugins = ["pytester"]

ENABLE = 'pytest_plugins = ("celeriac.contrib.pytest",)\n'

MEMORY_CONFTEST = (
    ENABLE
    + """
import uuid
import pytest

@pytest.fixture(scope="session")
def celery_config():
    url = f"memory://plugin-{uuid.uuid4().hex}"
    return {"broker_url": url, "result_backend": url}
"""
)


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", "-q", *args)


def test_celery_app_and_celery_worker_run_a_task_through_the_broker(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(MEMORY_CONFTEST)
    pytester.makepyfile(
        """
        def test_add(celery_app, celery_worker):
            @celery_app.task
            def add(x, y):
                return x + y

            assert celery_app.broker_url.startswith("memory://plugin-")
            assert add.delay(2, 3).get(timeout=10) == 5
        """
    )
    _run(pytester).assert_outcomes(passed=1)


def test_celery_worker_on_a_real_redis_from_the_environment(
    pytester: pytest.Pytester, redis_url: str, backend_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLUGIN_TEST_BROKER", redis_url)
    monkeypatch.setenv("PLUGIN_TEST_BACKEND", backend_url)
    pytester.makeconftest(
        ENABLE
        + """
import os
import pytest

@pytest.fixture(scope="session")
def celery_config():
    return {
        "broker_url": os.environ["PLUGIN_TEST_BROKER"],
        "result_backend": os.environ["PLUGIN_TEST_BACKEND"],
    }
"""
    )
    pytester.makepyfile(
        """
        def test_mul(celery_app, celery_worker):
            @celery_app.task
            def mul(x, y):
                return x * y

            assert celery_app.broker_url.startswith("redis://127.0.0.1:")
            assert mul.delay(6, 7).get(timeout=10) == 42
        """
    )
    _run(pytester).assert_outcomes(passed=1)


def test_session_worker_is_started_once_and_serves_every_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(MEMORY_CONFTEST)
    pytester.makepyfile(
        """
        import threading

        seen = []

        def test_first(celery_session_app, celery_session_worker):
            @celery_session_app.task(name="plugin.where")
            def where():
                return threading.current_thread().name

            celery_session_worker.reload()  # as Celery's docs write it; not needed here
            seen.append((id(celery_session_worker), where.delay().get(timeout=10)))

        def test_second(celery_session_app, celery_session_worker):
            where = celery_session_app.tasks["plugin.where"]
            seen.append((id(celery_session_worker), where.delay().get(timeout=10)))

        def test_same_worker_and_thread():
            assert len(seen) == 2 and seen[0] == seen[1]
            assert seen[0][1].startswith("celeriac-test-worker")
        """
    )
    _run(pytester).assert_outcomes(passed=3)


def test_each_test_gets_an_app_of_its_own_made_current(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(MEMORY_CONFTEST)
    pytester.makepyfile(
        """
        from celeriac.app.base import default_app

        apps = []

        def test_one(celery_app):
            assert default_app() is celery_app
            apps.append(id(celery_app))

        def test_two(celery_app):
            apps.append(id(celery_app))
            assert apps[0] != apps[1]
        """
    )
    _run(pytester).assert_outcomes(passed=2)


def test_eager_settings_from_celery_config_and_the_celery_marker(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(MEMORY_CONFTEST)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.celery(task_always_eager=True)
        def test_marker_makes_delay_eager(celery_app):
            @celery_app.task
            def add(x, y):
                return x + y

            result = add.delay(1, 1)
            assert type(result).__name__ == "EagerResult"
            assert result.get() == 2

        @pytest.mark.celery(task_always_eager=True, task_eager_propagates=True)
        def test_marker_makes_errors_propagate(celery_app):
            @celery_app.task
            def fail():
                raise KeyError("nope")

            with pytest.raises(KeyError):
                fail.delay()

        def test_without_marker_delay_sends(celery_app):
            @celery_app.task
            def add(x, y):
                return x + y

            assert type(add.delay(1, 1)).__name__ == "AsyncResult"
        """
    )
    _run(pytester).assert_outcomes(passed=3)


def test_celery_includes_pool_and_worker_parameters_are_honoured(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        plugin_tasks="""
        from celeriac import shared_task

        @shared_task(name="plugin.double")
        def double(x):
            return 2 * x
        """
    )
    pytester.makeconftest(
        MEMORY_CONFTEST
        + """
@pytest.fixture(scope="session")
def celery_includes():
    return ["plugin_tasks"]

@pytest.fixture(scope="session")
def celery_worker_pool():
    return "threads"

@pytest.fixture(scope="session")
def celery_worker_parameters():
    return {"queues": ["celery", "slow"], "concurrency": 2}
"""
    )
    pytester.makepyfile(
        """
        def test_included_task_runs_on_the_threads_pool(celery_app, celery_worker):
            assert celery_worker.runtime.pool_name == "threads"
            assert celery_worker.runtime.queues == ["celery", "slow"]
            result = celery_app.send_task("plugin.double", (21,), queue="slow")
            assert result.get(timeout=10) == 42
        """
    )
    _run(pytester).assert_outcomes(passed=1)


def test_fixtures_are_absent_until_asked_for_but_the_marker_is_known(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.celery(task_always_eager=True)
        def test_marked():
            pass

        def test_needs_app(celery_app):
            pass
        """
    )
    result = _run(pytester, "--strict-markers")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*fixture 'celery_app' not found*"])


def test_dash_p_enables_the_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_needs_app(celery_app):\n    assert celery_app.tasks\n")
    _run(pytester, "-p", "celeriac.contrib.pytest").assert_outcomes(passed=1)


def test_ini_switch_enables_the_fixtures_even_beside_pytest_plugins(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\nceleriac_fixtures = true\n")
    pytester.makeconftest(ENABLE)  # both ways at once must not register it twice
    pytester.makepyfile("def test_needs_app(celery_app):\n    assert celery_app.tasks\n")
    _run(pytester).assert_outcomes(passed=1)


def test_celerys_own_plugin_still_works_beside_celeriac_installed(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import celery
        import pytest

        @pytest.mark.celery(task_always_eager=True)
        def test_celery_app_is_celerys(celery_app):
            assert isinstance(celery_app, celery.Celery)
        """
    )
    _run(pytester, "-p", "celery.contrib.pytest", "--strict-markers").assert_outcomes(passed=1)


# start_worker and TestApp, used directly
@pytest.fixture
def test_app() -> Iterator[Celery]:
    app = TestApp()
    yield app
    app.close()


def test_test_app_has_its_own_memory_broker_and_the_ping_task(test_app: Celery) -> None:
    other = TestApp()
    assert test_app.broker_url.startswith("memory://test-")
    assert test_app.broker_url != other.broker_url
    assert "celery.ping" in test_app.tasks


def test_testing_tasks_module_gives_the_ping_task(test_app: Celery) -> None:
    from celeriac.contrib.testing.tasks import ping

    assert ping.name == "celery.ping"
    assert ping.apply().get() == "pong"


def test_setup_default_app_puts_the_previous_app_back(test_app: Celery) -> None:
    from celeriac.app.base import default_app

    before = default_app()
    with setup_default_app(test_app):
        assert default_app() is test_app
    assert default_app() is before


def test_start_worker_with_threads_runs_tasks_together(test_app: Celery) -> None:
    both_running = threading.Barrier(2, timeout=10)

    @test_app.task
    def meet() -> str:
        both_running.wait()  # returns only when the other task runs at the same time
        return threading.current_thread().name

    with start_worker(test_app, pool="threads", concurrency=2):
        results = [meet.delay(), meet.delay()]
        names = {result.get(timeout=10) for result in results}
    assert len(names) == 2


def test_start_worker_solo_runs_tasks_in_its_thread_with_time_limits(test_app: Celery) -> None:
    from celeriac.errors import SoftTimeLimitExceeded

    stop = threading.Event()

    @test_app.task(soft_time_limit=0.2)
    def slow() -> str:
        try:
            # short waits: the limit reaches a thread between two Python instructions
            while not stop.wait(0.01):
                pass
        except SoftTimeLimitExceeded:
            return threading.current_thread().name
        return "not interrupted"

    try:
        with start_worker(test_app, pool="solo"):
            assert slow.delay().get(timeout=10).startswith("celeriac-test-worker")
    finally:
        stop.set()


def test_start_worker_on_a_sqlite_broker_and_backend(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'broker.sqlite3'}"
    app = TestApp(broker=url, backend=url)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    try:
        with start_worker(app, pool="threads"):
            assert add.delay(1, 2).get(timeout=10) == 3
    finally:
        app.close()


def test_start_worker_leaves_unstarted_tasks_queued(test_app: Celery) -> None:
    @test_app.task
    def noop() -> None:
        return None

    with start_worker(test_app, perform_ping_check=False) as worker:
        pass
    assert not worker.runtime.stop.cold.is_set()
    noop.delay()
    assert test_app.broker.queue_length("celery") == 1


def test_start_worker_refuses_a_pool_that_cannot_run_in_a_thread(test_app: Celery) -> None:
    refused = pytest.raises(ImproperlyConfigured, match="pool='solo' or pool='threads'")
    with refused, start_worker(test_app, pool="prefork"):
        pass


def test_start_worker_raises_the_workers_error_when_the_broker_is_unreachable() -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = TestApp(broker=f"redis://127.0.0.1:{port}/0", broker_connection_timeout=0.5)
    with pytest.raises(BrokerError), start_worker(app, perform_ping_check=False):
        pass


def test_start_worker_says_when_a_task_outlives_shutdown_timeout(test_app: Celery) -> None:
    release = threading.Event()
    started = threading.Event()

    @test_app.task
    def hold() -> None:
        started.set()
        release.wait(10)

    try:
        late = pytest.raises(RuntimeError, match="larger shutdown_timeout")
        with late, start_worker(test_app, shutdown_timeout=0.2, perform_ping_check=False):
            hold.delay()
            assert started.wait(10)
    finally:
        release.set()


def test_worker_thread_has_ended_when_the_block_ends(test_app: Celery) -> None:
    with start_worker(test_app, hostname=f"t{uuid.uuid4().hex[:6]}@%h"):
        assert any(t.name.startswith("celeriac-test-worker") for t in threading.enumerate())
    assert not any(t.name.startswith("celeriac-test-worker") for t in threading.enumerate())
