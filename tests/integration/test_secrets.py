"""Passwords in broker and backend URLs never show: every output of a full run is collected
(a prefork worker at -l debug with its banner and a failing task's traceback, inspect
stats/conf replies, ``celeriac report``, a client's and a worker's errors against a wrong port,
an invalid URL, the demo) and searched for the passwords.

The server is a real redis-server whose default user needs a password
(``redis://:secret@``) with an ACL user (``redis://user:secret@``) for the results.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from celeriac import Celery
from celeriac.errors import BrokerError, CeleriacError
from tests.support.redis_server import free_port
from tests.support.redis_tls import ADMIN_PASSWORD, SecureRedis, start_secure_redis
from tests.support.workers import ROOT, TESTS_DIR, start_celeriac_worker, subprocess_env

WAIT_S = 20.0
USER, USER_PASSWORD = "results-user", "Us3r-s3cret-pw"
PASSWORDS = (ADMIN_PASSWORD, USER_PASSWORD)


@dataclass
class Outputs:
    texts: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, text: str) -> None:
        self.texts[name] = text

    def leaks(self) -> dict[str, list[str]]:
        return {
            name: [p for p in PASSWORDS if p in text]
            for name, text in self.texts.items()
            if any(p in text for p in PASSWORDS)
        }


@pytest.fixture(scope="module")
def server() -> Iterator[SecureRedis]:
    secure = start_secure_redis(tls=False)
    admin = secure.admin()
    admin.acl_setuser(
        USER,
        enabled=True,
        passwords=[f"+{USER_PASSWORD}"],
        keys=["*"],
        channels=["*"],
        commands=["+@all"],
    )
    admin.close()
    try:
        yield secure
    finally:
        secure.stop()


def _error_text(exc: BaseException) -> str:
    return f"{exc}\n{''.join(traceback.format_exception(exc))}"


def _cli(*args: str, broker: str, backend: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "celeriac", "-A", "core_tasks", *args],
        cwd=str(TESTS_DIR / "support"),
        env=subprocess_env(broker, backend),
        capture_output=True,
        timeout=60,
        check=False,
    )
    return proc.stdout.decode() + proc.stderr.decode()


@pytest.fixture(scope="module")
def outputs(server: SecureRedis, tmp_path_factory: pytest.TempPathFactory) -> Outputs:
    broker, backend = server.url(0), server.url(1, user=USER, password=USER_PASSWORD)
    found = Outputs()
    # this process's own log lines (the client's warnings and errors), tracebacks included
    client_log = io.StringIO()
    handler = logging.StreamHandler(client_log)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        _worker_run(found, broker, backend)
        found.add("report", _cli("report", broker=broker, backend=backend))
        found.add("cli inspect ping", _cli("inspect", "ping", broker=broker, backend=backend))
        wrong_port = f"redis://:{ADMIN_PASSWORD}@127.0.0.1:{free_port()}/0"
        for command in (("call", "core.add", "--args", "[1, 2]"), ("inspect", "ping")):
            output = _cli(*command, broker=wrong_port, backend=backend)
            found.add(f"cli {command[0]} on a wrong port", output)
        _client_errors(found)
        _worker_against_a_wrong_port(found, backend)
        _demo(found, server.url(3), tmp_path_factory.mktemp("demo"))
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    found.add("client log", client_log.getvalue())
    return found


def _worker_run(found: Outputs, broker: str, backend: str) -> None:
    worker = start_celeriac_worker(
        "core_tasks", broker, "-P", "prefork", "-c", "1", "-l", "debug", backend_url=backend
    )
    app = Celery("secrets_client", broker=broker, backend=backend)
    try:
        assert app.send_task("core.add", (1, 2)).get(timeout=WAIT_S) == 3
        failing = app.send_task("core.fail_builtin", ("boom",))
        with pytest.raises(ValueError) as caught:
            failing.get(timeout=WAIT_S)
        found.add("task traceback", f"{failing.traceback}\n{_error_text(caught.value)}")
        inspect = app.control.inspect(timeout=5, limit=1)  # one worker: answer at once
        found.add("inspect stats", repr(inspect.stats()))
        found.add("inspect conf", repr(inspect.conf()))
        found.add("inspect conf with defaults", repr(inspect.conf(with_defaults=True)))
    finally:
        app.close()
        worker.stop()
    found.add("worker -l debug", worker.log())
    worker.log_path.unlink(missing_ok=True)


def _client_errors(found: Outputs) -> None:
    port = free_port()  # nothing listens there
    wrong = f"redis://:{ADMIN_PASSWORD}@127.0.0.1:{port}/0"
    wrong_backend = f"redis://{USER}:{USER_PASSWORD}@127.0.0.1:{port}/1"
    app = Celery("secrets_wrong", broker=wrong, backend=wrong_backend)
    app.conf.task_publish_retry = False
    app.conf.broker_connection_timeout = 1.0
    try:
        with pytest.raises(BrokerError) as sent:
            app.send_task("core.add", (1, 2))
        found.add("client send error", _error_text(sent.value))
        with pytest.raises(CeleriacError) as read:  # TimeoutError: the backend is unreachable
            app.AsyncResult(str(uuid.uuid4())).get(timeout=1)
        found.add("client result error", _error_text(read.value))
    finally:
        app.close()
    bad = Celery("secrets_bad_url", broker=f"redis://:{ADMIN_PASSWORD}@127.0.0.1:port/0")
    with pytest.raises(CeleriacError) as invalid:
        bad.send_task("core.add", (1, 2))
    found.add("invalid url error", _error_text(invalid.value))
    bad.close()
    # a scheme celeriac does not serve: the error names the URL, masked; and amqp:// on a
    # port where nothing listens (refused, or not served: either way masked)
    for role, url in (
        ("broker", f"kafka://guest:{ADMIN_PASSWORD}@127.0.0.1:9092/"),
        ("backend", f"kafka://guest:{USER_PASSWORD}@127.0.0.1:9092/"),
        ("amqp broker", f"amqp://guest:{ADMIN_PASSWORD}@127.0.0.1:{free_port()}//"),
    ):
        is_broker = role != "backend"
        other = Celery("secrets_scheme", broker=url if is_broker else "memory://secrets")
        other.conf.broker_connection_timeout = 1.0
        other.conf.task_publish_retry = False
        if not is_broker:
            other.conf.result_backend = url
        with pytest.raises(CeleriacError) as unknown:
            other.send_task("core.add", (1, 2)) if is_broker else other.backend
        found.add(f"unknown {role} scheme error", _error_text(unknown.value))
        other.close()


def _worker_against_a_wrong_port(found: Outputs, backend: str) -> None:
    wrong = f"redis://:{ADMIN_PASSWORD}@127.0.0.1:{free_port()}/0"
    worker = start_celeriac_worker(
        "core_tasks", wrong, "-P", "solo", "-l", "debug", backend_url=backend, wait_ready=False
    )
    try:
        worker.wait_for_log("127.0.0.1", timeout_s=WAIT_S)  # its banner or its complaint
        worker.wait_for_log("Connection refused", timeout_s=WAIT_S)
    finally:
        worker.stop()
    found.add("worker on a wrong port", worker.log())
    worker.log_path.unlink(missing_ok=True)


def _demo(found: Outputs, broker: str, workdir: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env.pop("CELERIAC_BROKER_URL", None)
    env.pop("CELERIAC_RESULT_BACKEND", None)
    proc = subprocess.run(
        [sys.executable, "-m", "celeriac", "demo", "-P", "solo", "-b", broker],
        cwd=workdir,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    found.add("demo", proc.stdout.decode() + proc.stderr.decode())


def test_no_output_of_a_full_run_shows_a_password(outputs: Outputs) -> None:
    assert outputs.leaks() == {}


def test_the_outputs_searched_say_where_they_went_with_the_password_masked(
    outputs: Outputs, server: SecureRedis
) -> None:
    assert f"redis://:***@127.0.0.1:{server.port}/0" in outputs.texts["worker -l debug"]
    assert f"redis://{USER}:***@127.0.0.1:{server.port}/1" in outputs.texts["report"]
    assert "redis://:***@127.0.0.1:" in outputs.texts["client send error"]
    assert f"redis://:***@127.0.0.1:{server.port}/3" in outputs.texts["demo"]
    assert "ValueError: boom" in outputs.texts["task traceback"]
    assert "redis://:***@127.0.0.1:" in outputs.texts["cli call on a wrong port"]
    assert "kafka://guest:***@127.0.0.1:9092/" in outputs.texts["unknown broker scheme error"]


def test_inspect_conf_answers_with_the_urls_masked(outputs: Outputs, server: SecureRedis) -> None:
    assert "redis://:***@127.0.0.1" in outputs.texts["inspect conf with defaults"]
