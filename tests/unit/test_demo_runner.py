"""runner.py without workers: a pool whose library is missing is skipped, never started."""

from __future__ import annotations

import os

import pytest

from celeriac import Celery
from celeriac.demo import plan, runner
from celeriac.demo.progress import PlainReporter


def test_missing_library_skips_the_pool_with_the_pip_command(
    monkeypatch: pytest.MonkeyPatch, app: Celery, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(plan, "missing_library", lambda pool: f"pip install 'celeriac[{pool}]'")

    def no_worker(*args: object, **kwargs: object) -> None:
        raise AssertionError("a skipped pool must not start a worker")

    monkeypatch.setattr(runner, "DemoWorker", no_worker)
    session = runner.Session(
        broker_url="memory://x",
        env={},
        token="t",
        client=app,
        http_url="http://127.0.0.1:1/",
        iterations=1000,
        concurrency=None,
        reporter=PlainReporter(),
    )
    report = runner.run_pool(session, "gevent")
    assert report.status == "skipped"
    assert report.install == "pip install 'celeriac[gevent]'"
    assert "skipped: pip install 'celeriac[gevent]'" in capsys.readouterr().err


def test_broker_env_points_this_process_at_the_demo_broker_and_restores_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CELERIAC_BROKER_URL", "redis://127.0.0.1:9/0")
    monkeypatch.delenv("CELERIAC_RESULT_BACKEND", raising=False)
    with runner._broker_env("sqlite:////tmp/x.sqlite3") as env:
        assert env["CELERIAC_BROKER_URL"] == "sqlite:////tmp/x.sqlite3"
        assert os.environ["CELERIAC_RESULT_BACKEND"] == "sqlite:////tmp/x.sqlite3"
    assert os.environ["CELERIAC_BROKER_URL"] == "redis://127.0.0.1:9/0"
    assert "CELERIAC_RESULT_BACKEND" not in os.environ
