"""The dashboard's pages, actions and guards through Starlette's TestClient, on the memory
broker and backend (the history on SQLite): escaping, masking, CSRF, auth, 404s, args cut
short, the workflow tree, dead letters, /metrics and a history that survives a restart."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from celeriac import Celery
from celeriac.cli.main import _register_commands, cli
from celeriac.dashboard.app import create_app
from celeriac.dashboard.security import Auth, check_address
from celeriac.dashboard.state import DashboardState
from celeriac.errors import ConfigurationError


def task_events(uuid: str, name: str, **fields: Any) -> list[dict[str, Any]]:
    now = time.time()
    base = {"uuid": uuid, "hostname": "w1@host", "timestamp": now}
    received = {
        "type": "task-received",
        "name": name,
        "args": fields.get("args", "()"),
        "kwargs": fields.get("kwargs", "{}"),
        "root_id": fields.get("root_id"),
        "parent_id": fields.get("parent_id"),
        "retries": 0,
    }
    started = {"type": "task-started", "pid": 4242, "pool": "prefork", "child_index": 1}
    done = {"type": "task-succeeded", "result": fields.get("result", "5"), "runtime": 0.25}
    return [{**base, **received}, {**base, **started}, {**base, **done}]


def fed(app: Celery, *events: dict[str, Any], max_tasks: int | None = None) -> DashboardState:
    state = DashboardState(app, max_tasks)
    for event in events:
        state.feed(dict(event))
    return state


def client_for(state: DashboardState, auth: Auth | None = None) -> TestClient:
    return TestClient(create_app(state, auth, start=False), follow_redirects=False)


def test_values_are_escaped_and_secrets_masked(app: Celery) -> None:
    name = "<script>alert(1)</script>"
    state = fed(
        app,
        *task_events(
            "t-1",
            name,
            args="('<img src=x onerror=alert(2)>',)",
            kwargs="{'password': 'hunter2', 'url': 'redis://u:s3cret@db:6379/0'}",
        ),
    )
    with client_for(state) as client:
        listing = client.get("/tasks").text
        detail = client.get("/tasks/t-1").text
    for page in (listing, detail):
        assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "<img src=x" not in page
        assert "hunter2" not in page and "s3cret" not in page
    assert "redis://u:***@db:6379/0" in detail
    assert "child 2, pid 4242" in detail  # where it ran


def test_unknown_task_is_a_404_page(app: Celery) -> None:
    with client_for(fed(app)) as client:
        response = client.get("/tasks/no-such-id")
        dead = client.get("/queues/celery/dead/7")
    assert response.status_code == 404
    assert "text/html" in response.headers["content-type"]
    assert "no task &#39;no-such-id&#39; is known here" in response.text
    assert "Traceback" not in response.text
    assert dead.status_code == 404 and "no dead letter number 7" in dead.text


def test_post_needs_the_csrf_token(app: Celery) -> None:
    state = fed(app, task_events("t-2", "ctl.add")[0])  # received: still revocable
    with client_for(state) as client:
        assert client.post("/actions/revoke", data={"task_id": "t-2"}).status_code == 403
        page = client.get("/tasks/t-2")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        wrong = client.post("/actions/revoke", data={"task_id": "t-2", "csrf_token": "nope"})
        assert wrong.status_code == 403 and "CSRF" in wrong.text
        good = client.post(
            "/actions/revoke",
            data={"task_id": "t-2", "csrf_token": token.group(1), "next": "//evil.example/"},
        )
    assert good.status_code == 303
    assert good.headers["location"].startswith("/tasks/t-2?done=revoked")
    assert "t-2" in app.broker.revoked_ids()


def test_auth_basic_and_bearer(app: Celery) -> None:
    state = fed(app)
    with client_for(state, Auth("admin", "pw", "tok")) as client:
        assert client.get("/cluster").status_code == 401
        assert client.get("/metrics").status_code == 401
        assert client.get("/cluster", auth=("admin", "pw")).status_code == 200
        assert client.get("/cluster", auth=("admin", "bad")).status_code == 401
        bearer = {"Authorization": "Bearer tok"}
        assert client.get("/cluster", headers=bearer).status_code == 200
        assert client.get("/cluster", headers={"Authorization": "Bearer x"}).status_code == 401
        assert client.get("/login", params={"token": "nope"}).status_code == 401
        login = client.get("/login", params={"token": "tok"})
        assert login.status_code == 303 and "HttpOnly" in login.headers["set-cookie"]
        assert client.get("/cluster").status_code == 200  # the browser's cookie now


def test_non_loopback_address_needs_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    check_address("127.0.0.1", None)
    check_address("::1", None)
    check_address("0.0.0.0", Auth(token="t"))
    with pytest.raises(ConfigurationError, match="not a loopback address"):
        check_address("0.0.0.0", None)
    with pytest.raises(ConfigurationError, match="user:password"):
        Auth.parse("admin", None)
    monkeypatch.delenv("CELERIAC_DASHBOARD_TOKEN", raising=False)
    monkeypatch.delenv("CELERIAC_DASHBOARD_AUTH", raising=False)
    _register_commands()
    result = CliRunner().invoke(cli, ["-b", "memory://", "dashboard", "--address", "0.0.0.0"])
    assert result.exit_code != 0
    assert "not a loopback address and no auth is set" in result.output


def test_huge_args_cut_short_in_lists_whole_on_request(app: Celery) -> None:
    huge = "(" + "x" * 9000 + "END)"
    state = fed(app, *task_events("t-3", "big", args=huge))
    with client_for(state) as client:
        listing = client.get("/tasks").text
        detail = client.get("/tasks/t-3").text
        whole = client.get("/tasks/t-3?full=1").text
    assert "x" * 100 not in listing and "END)" not in listing
    assert "END)" not in detail and 'id="show-whole"' in detail
    assert "END)" in whole and "x" * 9000 in whole


def test_search_and_workflow_tree(app: Celery) -> None:
    events = [
        *task_events("root", "step.one"),
        *task_events("mid", "step.two", root_id="root", parent_id="root"),
        *task_events("leaf", "step.three", root_id="root", parent_id="mid"),
        *task_events("other", "lonely.task"),
    ]
    state = fed(app, *events)
    with client_for(state) as client:
        found = client.get("/tasks", params={"q": "step.t"}).text
        detail = client.get("/tasks/leaf").text
    assert 'data-task-id="mid"' in found and 'data-task-id="leaf"' in found
    assert 'data-task-id="root"' not in found and "lonely" not in found
    workflow = detail[detail.index('id="workflow"') :]
    assert workflow.index("step.one") < workflow.index("step.two") < workflow.index("step.three")
    assert "this task" in workflow


def test_metrics_count_the_events(app: Celery) -> None:
    state = fed(app, *task_events("m1", "ctl.add"), *task_events("m2", "ctl.add"))
    with client_for(state) as client:
        text = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    succeeded = [s for s in families["celery_task_succeeded"].samples if s.name.endswith("_total")]
    assert sum(s.value for s in succeeded) == 2
    assert succeeded[0].labels["name"] == "ctl.add"
    assert "celery_queue_length" in families and "celery_worker_up" in families


def test_history_survives_a_restart_bounded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    app = Celery("h", broker=url, backend=url)
    try:
        events = [e for i in range(5) for e in task_events(f"h-{i}", f"job{i}")]
        first = fed(app, *events, max_tasks=3)
        first.flush()
        again = DashboardState(app, 3)
        again.history()
        assert list(again.tasks) == ["h-2", "h-3", "h-4"]
        assert again.tasks["h-4"]["state"] == "SUCCESS"
        assert again.tasks["h-4"]["result"] == "5"
    finally:
        app.close()


def csrf_of(client: TestClient, path: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert found is not None, f"no form on {path}"
    return found.group(1)


def test_dead_letters_listed_inspected_requeued_and_purged(app: Celery) -> None:
    broker = app.broker
    queue = "dlq_unit"
    broker.purge([queue])
    broker.purge_dead(queue)
    sent = [app.send_task("ctl.add", args=[i, "<b>html</b>"], queue=queue).id for i in range(3)]
    for delivery in broker.fetch([queue], 3, 1.0):
        broker.dead_letter(delivery, "unit test: <i>no such task</i>")
    state = DashboardState(app)
    state.known_queues.add(queue)
    state.poll(discover=False)
    assert state.queues[queue]["dead"] == 3 and state.queues[queue]["total"] == 0
    with client_for(state) as client:
        assert f'href="/queues/{queue}/dead">3</a>' in client.get("/queues").text
        listing = client.get(f"/queues/{queue}/dead").text
        assert all(task_id in listing for task_id in sent)
        assert "&lt;i&gt;no such task&lt;/i&gt;" in listing and "<i>" not in listing
        shown = client.get(f"/queues/{queue}/dead/1").text
        assert "body (decoded)" in shown and "&lt;b&gt;html&lt;/b&gt;" in shown
        token = csrf_of(client, f"/queues/{queue}/dead")
        one = client.post(
            f"/queues/{queue}/dead/requeue", data={"csrf_token": token, "task_id": sent[0]}
        )
        assert one.status_code == 303 and "requeued%201%20message" in one.headers["location"]
        assert broker.queue_length(queue) == 1 and broker.dead_letter_count(queue) == 2
        assert client.post(f"/queues/{queue}/dead/purge", data={}).status_code == 403
        purged = client.post(f"/queues/{queue}/dead/purge", data={"csrf_token": token})
        assert purged.status_code == 303 and broker.dead_letter_count(queue) == 0
    broker.purge([queue])
