"""plan.py and the shipped seed tasks: what each pool gets, and the seed's routes."""

from __future__ import annotations

import importlib.util

import pytest

from celeriac import Celery
from celeriac.demo import plan, seed_tasks
from celeriac.demo.main import check_broker, pools_for
from celeriac.demo.seed_app import ROUTES
from celeriac.errors import ConfigurationError
from tests.unit.helpers import take_envelopes


def test_all_runs_the_seed_pools_first_then_celeriac_s_two() -> None:
    assert pools_for("all") == ["prefork", "solo", "eventlet", "gevent", "threads", "asyncio"]
    assert pools_for("solo") == ["solo"]
    with pytest.raises(ConfigurationError, match="choose one of"):
        pools_for("forkserver")


def test_memory_broker_is_refused_because_workers_are_other_processes() -> None:
    with pytest.raises(ConfigurationError, match="sqlite:///path"):
        check_broker("memory://demo")
    check_broker("sqlite:////tmp/x.sqlite3")
    check_broker(None)


def test_solo_always_has_one_slot_and_others_take_the_requested_concurrency() -> None:
    assert plan.concurrency_for("solo", 8) == 1
    assert plan.concurrency_for("prefork", None) == 4
    assert plan.concurrency_for("gevent", 7) == 7


def test_asyncio_pool_gets_async_variants_so_the_loop_runs_them() -> None:
    calls = plan.calls_for("asyncio", 10, "http://127.0.0.1:1/")
    batch_tasks = {c.task for c in calls if c.batch != "seed"}
    assert batch_tasks == {
        "tasks.realworld_tasks.cpu_bound_async",
        "tasks.realworld_tasks.io_bound_async",
    }
    sync = plan.calls_for("gevent", 10, "http://127.0.0.1:1/")
    assert [c.batch for c in sync].count("cpu") == plan.CPU_TASKS
    assert [c.batch for c in sync].count("io") == plan.IO_TASKS


def test_missing_green_library_is_a_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "gevent" else real(name)
    )
    assert plan.missing_library("gevent") == "pip install 'celeriac[gevent]'"
    assert plan.missing_library("solo") is None


def test_calibration_scales_work_to_the_machine() -> None:
    assert plan.calibrate(0.01) >= 1_000


@pytest.mark.parametrize(
    ("name", "queue"),
    [
        ("tasks.basic_tasks.add", "basic"),
        ("tasks.advanced_tasks.complex_task", "advanced"),
        ("tasks.realworld_tasks.cpu_bound", "realworld"),
    ],
)
def test_seed_routes_send_each_module_to_its_queue(memory_url: str, name: str, queue: str) -> None:
    app = Celery("routes", broker=memory_url, backend=memory_url, task_routes=ROUTES)
    try:
        app.send_task(name, [1])
        assert len(take_envelopes(app, queue)) == 1
    finally:
        app.close()


def test_seed_tasks_keep_the_seed_s_names() -> None:
    assert seed_tasks.add.name == "tasks.basic_tasks.add"
    assert seed_tasks.add(3, 5) == 8
    assert seed_tasks.multiply(4, 6) == 24


def test_cpu_task_reports_its_cpu_time_and_thread() -> None:
    report = seed_tasks.cpu_bound(20_000)
    assert report["iterations"] == 20_000
    assert report["cpu_s"] > 0
    assert isinstance(report["native_thread_id"], int)


def test_fetch_url_refuses_anything_but_loopback() -> None:
    with pytest.raises(ValueError, match="only fetches loopback"):
        seed_tasks.fetch_url("http://example.com/")
