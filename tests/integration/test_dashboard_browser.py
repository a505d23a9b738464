"""``celeriac dashboard`` in a real headless Chromium (Debian's, driven by Playwright),
against a running ``-P prefork -c 4`` worker on Redis: the seed's tree with pids that
match psutil, a task appearing live, revoke by click, XSS, CSRF and 404."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from celeriac import Celery, chain, group
from tests.support.redis_server import cleanup, free_port, start_redis
from tests.support.workers import (
    TESTS_DIR,
    WorkerProcess,
    start_celeriac_worker,
    subprocess_env,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# the README's screenshot is rewritten only on request (CELERIAC_README_SHOT=1), so a test run
# leaves the working tree as it was
README_SHOT = TESTS_DIR.parent / "docs" / "dashboard.png"
XSS_NAME = "<img src=x onerror=alert(1)>"


class Dashboard:
    def __init__(self, broker_url: str, backend_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(tempfile.mkstemp(prefix="dashboard-", suffix=".log")[1])
        env = subprocess_env(broker_url, backend_url)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celeriac", "dashboard", "--port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(TESTS_DIR / "support"),
            )
        wait_until(self._up, 20, "the dashboard to answer")

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"dashboard exited:\n{self.log.read_text()}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.unlink(missing_ok=True)


def wait_until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: apt-get install -y chromium (scripts/test.sh)")
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=ARGS,
            headless=True,
            viewport={"width": 1100, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots of each page go."""
    return tmp_path_factory.mktemp("dashboard-shots")


@pytest.fixture
def cluster(
    worker_factory: Callable[..., WorkerProcess], redis_url: str, backend_url: str
) -> Iterator[tuple[WorkerProcess, Dashboard, Celery]]:
    worker = worker_factory("control_tasks", "-P", "prefork", "-c", "4", "-E")
    dashboard = Dashboard(redis_url, backend_url)
    client = Celery("dash_client", broker=redis_url, backend=backend_url)
    client.conf.task_send_sent_event = True
    try:
        yield worker, dashboard, client
    finally:
        dashboard.stop()
        client.close()


def watched_page(browser: Any) -> tuple[Any, list[str]]:
    page = browser.new_page()
    problems: list[str] = []
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on(
        "console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None
    )
    return page, problems


def test_tree_live_task_revoke_and_screenshots(
    browser: Any, cluster: tuple[WorkerProcess, Dashboard, Celery], tmp_path: Path, shots: Path
) -> None:
    worker, dashboard, client = cluster
    page, problems = watched_page(browser)
    page.goto(f"{dashboard.url}/cluster")
    try:
        page.wait_for_selector("li[data-role=child]", timeout=15000)
    except Exception:
        raise AssertionError(page.inner_text("main") + dashboard.log.read_text()) from None
    kids = {p.pid for p in psutil.Process(worker.pid).children()}
    wait_until(
        lambda: (
            {
                int(x)
                for x in page.eval_on_selector_all(
                    "li[data-role=child]", "els => els.map(e => e.dataset.pid)"
                )
            }
            == kids
        ),
        10,
        "the four children's pids",
    )
    assert len(kids) == 4
    manager = page.eval_on_selector("li[data-role=manager]", "e => e.dataset.pid")
    assert int(manager) == worker.pid

    # a long task shows in the tree where it runs, with its time
    go = tmp_path / "go"
    hold = client.send_task("ctl.hold", args=[str(go), 30.0])
    page.wait_for_selector(f"a.running[data-task-id='{hold.id}']", timeout=2000)  # within 2 s
    page.screenshot(path=str(shots / "cluster.png"), full_page=True)
    readme_shot = README_SHOT if os.environ.get("CELERIAC_README_SHOT") else shots / "readme.png"
    page.screenshot(path=str(readme_shot), type="png")

    # a task sent while the tasks page is open appears as SUCCESS without a reload
    page.goto(f"{dashboard.url}/tasks")
    marker = page.evaluate("() => { window.__same = 1; return 1 }")
    started = time.monotonic()
    done = client.send_task("ctl.add", args=[2, 3])
    page.wait_for_selector(f"tr[data-task-id='{done.id}'][data-state=SUCCESS]", timeout=3000)
    assert time.monotonic() - started < 3.0
    assert page.evaluate("() => window.__same") == marker  # the same document: no reload
    page.screenshot(path=str(shots / "tasks.png"), full_page=True)

    # clicking Revoke on a task waiting for its countdown revokes it: it never runs
    later = client.send_task("ctl.hold", args=[str(go), 30.0], countdown=60)
    page.goto(f"{dashboard.url}/tasks")
    row = page.wait_for_selector(f"tr[data-task-id='{later.id}']", timeout=5000)
    assert row.get_attribute("data-state") in ("PENDING", "RECEIVED")
    page.goto(f"{dashboard.url}/tasks/{later.id}")
    page.click("form[action='/actions/revoke'] button")
    page.wait_for_selector(".flash:has-text('revoked')", timeout=5000)
    page.wait_for_selector("#task-state:has-text('REVOKED')", timeout=5000)
    assert later.state == "REVOKED"

    # clicking Terminate on the long running task revokes it
    page.goto(f"{dashboard.url}/tasks/{hold.id}")
    page.click("form[action='/actions/terminate'] button")
    page.wait_for_selector("#task-state:has-text('REVOKED')", timeout=5000)
    assert hold.state == "REVOKED"
    page.screenshot(path=str(shots / "task.png"), full_page=True)

    # pool grow and shrink, clicked: the tree follows the worker's real children
    page.goto(f"{dashboard.url}/cluster")
    page.click("form[action='/actions/pool-grow'] button")
    page.wait_for_selector(".flash:has-text('grew the pool')", timeout=5000)
    wait_until(lambda: len(child_pids(page)) == 5, 10, "a fifth child in the tree")
    assert child_pids(page) == {p.pid for p in psutil.Process(worker.pid).children()}
    page.click("form[action='/actions/pool-shrink'] button")
    wait_until(lambda: len(child_pids(page)) == 4, 10, "back to four children")

    page.goto(f"{dashboard.url}/queues")
    page.wait_for_selector("tr[data-queue=celery]", timeout=3000)
    page.screenshot(path=str(shots / "queues.png"), full_page=True)
    # rate limit and shutdown, clicked on the cluster page
    page.goto(f"{dashboard.url}/cluster")
    page.fill("form[action='/actions/rate-limit'] input[name=task_name]", "ctl.add")
    page.fill("form[action='/actions/rate-limit'] input[name=rate]", "10/m")
    page.click("form[action='/actions/rate-limit'] button")
    page.wait_for_selector(".flash:has-text('rate limit of ctl.add')", timeout=5000)
    page.click("form[action='/actions/shutdown'] button")
    assert worker.wait(20) == 0
    page.wait_for_selector("section.worker.offline", timeout=5000)
    assert problems == []
    for name in ("cluster", "tasks", "task", "queues"):
        assert (shots / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert readme_shot.stat().st_size < 300_000


def test_xss_csrf_and_404(browser: Any, cluster: tuple[WorkerProcess, Dashboard, Celery]) -> None:
    _worker, dashboard, client = cluster
    page, problems = watched_page(browser)
    page.goto(f"{dashboard.url}/tasks")
    evil = client.send_task(XSS_NAME, args=["<script>alert(2)</script>"], kwargs={"b": "<b>x</b>"})
    row = page.wait_for_selector(f"tr[data-task-id='{evil.id}']", timeout=5000)
    assert row.query_selector("td a").inner_text() == XSS_NAME
    assert "<script>alert(2)</script>" in row.inner_text()
    assert page.query_selector("#tasks img") is None and page.query_selector("#tasks b") is None
    page.goto(f"{dashboard.url}/tasks/{evil.id}")
    assert XSS_NAME in page.inner_text("h1")
    assert page.query_selector("main img") is None
    assert problems == []

    # a group and a chain, each drawn as a tree on a member's page
    add = client.signature
    grouped = group(add("ctl.add", args=(1, 1)), add("ctl.add", args=(2, 2))).apply_async()
    chained = chain(add("ctl.add", args=(1, 1)), add("ctl.add", args=(10,))).apply_async()
    assert grouped.get(timeout=10) == [2, 4] and chained.get(timeout=10) == 12
    member = grouped.results[0].id
    page.goto(f"{dashboard.url}/tasks/{member}")
    page.wait_for_selector(f"#workflow li.group:has-text('{grouped.id}')", timeout=5000)
    assert page.locator("#workflow li.group > ul > li").count() == 2
    page.goto(f"{dashboard.url}/tasks/{chained.id}")
    first = page.wait_for_selector("#workflow > li.member", timeout=5000)
    assert "ctl.add" in first.inner_text() and first.query_selector("ul > li.member")

    # CSRF: a POST without the token (or with a wrong one) is refused
    with httpx.Client(base_url=dashboard.url) as http:
        http.get("/cluster")  # gets the cookie
        bare = httpx.post(f"{dashboard.url}/actions/revoke", data={"task_id": evil.id})
        wrong = http.post("/actions/revoke", data={"task_id": evil.id, "csrf_token": "x" * 43})
        assert bare.status_code == 403 and wrong.status_code == 403
        assert "CSRF" in wrong.text
        missing = http.get("/tasks/no-such-task")
        assert missing.status_code == 404
        assert "no task" in missing.text and "Traceback" not in missing.text


def child_pids(page: Any) -> set[int]:
    pids = page.eval_on_selector_all("li[data-role=child]", "els => els.map(e => e.dataset.pid)")
    return {int(pid) for pid in pids}


def test_sqlite_tree_and_a_task_appearing_live(browser: Any, tmp_path: Path, shots: Path) -> None:
    url = f"sqlite:///{tmp_path / 'broker.db'}"
    worker = start_celeriac_worker(
        "control_tasks", url, "-P", "prefork", "-c", "4", "-E", backend_url=url
    )
    dashboard = None
    client = Celery("dash_sqlite", broker=url, backend=url)
    try:
        dashboard = Dashboard(url, url)
        page, problems = watched_page(browser)
        page.goto(f"{dashboard.url}/cluster")
        kids = {p.pid for p in psutil.Process(worker.pid).children()}
        assert len(kids) == 4
        wait_until(lambda: child_pids(page) == kids, 15, "the four children on SQLite")
        manager = page.eval_on_selector("li[data-role=manager]", "e => e.dataset.pid")
        assert int(manager) == worker.pid
        page.goto(f"{dashboard.url}/tasks")
        done = client.send_task("ctl.add", args=[20, 22])
        page.wait_for_selector(f"tr[data-task-id='{done.id}'][data-state=SUCCESS]", timeout=3000)
        assert done.get(timeout=5) == 42
        page.screenshot(path=str(shots / "tasks-sqlite.png"), full_page=True)
        assert problems == []
    finally:
        if dashboard is not None:
            dashboard.stop()
        worker.stop()
        client.close()


def test_a_lost_broker_is_shown_and_the_dashboard_recovers(browser: Any) -> None:
    server = start_redis()
    dashboard = None
    try:
        dashboard = Dashboard(server.url(0), server.url(1))
        page, _problems = watched_page(browser)
        page.goto(f"{dashboard.url}/cluster")
        page.wait_for_selector("#broker-status.up", timeout=5000)
        server.stop()
        page.wait_for_selector("#broker-status.down", timeout=10000)
        assert "Broker unreachable" in page.inner_text("#broker-status")
        server.restart()
        page.wait_for_selector("#broker-status.up", timeout=10000)
        page.goto(f"{dashboard.url}/tasks")  # the pages still draw after the outage
        page.wait_for_selector("#broker-status.up", timeout=5000)
    finally:
        if dashboard is not None:
            dashboard.stop()
        cleanup(server)
