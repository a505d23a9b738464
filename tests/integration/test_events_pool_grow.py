"""A prefork worker's heartbeat counts the tasks of children added by ``pool_grow``: each
child has its own cells in the events' shared counters, sized for every child the pool's
slot table has room for (not only ``--concurrency``)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest

from celeriac import Celery
from celeriac.events import EventReceiver
from tests.support.workers import WorkerProcess, start_celeriac_worker

pytestmark = pytest.mark.timeout(90)
NODE = f"grow@{socket.gethostname()}"
WAIT_S = 15.0


@pytest.fixture
def worker(redis_url: str, backend_url: str) -> Iterator[WorkerProcess]:
    process = start_celeriac_worker(
        "prefork_tasks",
        redis_url,
        "-P",
        "prefork",
        "-c",
        "1",
        "-E",
        "-n",
        NODE,
        backend_url=backend_url,
    )
    yield process
    process.stop()
    process.log_path.unlink(missing_ok=True)


@pytest.fixture
def client(redis_url: str, backend_url: str) -> Iterator[Celery]:
    app = Celery("grow_client", broker=redis_url, backend=backend_url)
    yield app
    app.close()


def _wait(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"waited {WAIT_S} s for {what}"
        time.sleep(0.05)


def test_heartbeat_processed_counts_the_tasks_of_grown_children(
    worker: WorkerProcess, client: Celery
) -> None:
    replies = client.control.pool_grow(2, destination=[NODE], reply=True, timeout=5.0)
    assert replies == [{NODE: {"ok": "pool will grow"}}]
    _wait(lambda: len(worker.children()) == 3, "three children")

    ran = 0
    children: set[int] = set()
    for _ in range(6):  # batches of overlapping tasks, until grown children ran some
        results = [client.send_task("pf.place", (0.4,)) for _ in range(3)]
        places = [r.get(timeout=WAIT_S) for r in results]
        ran += len(places)
        children |= {p["child_index"] for p in places}
        if len(children & {1, 2}) and len(children) >= 2:
            break
    assert len(children) >= 2 and children & {1, 2}, f"tasks ran only in children {children}"

    done_at = time.time()
    last = None
    for event in EventReceiver(client).events(timeout_s=WAIT_S):
        if event is None or event.get("type") != "worker-heartbeat":
            continue
        if event.get("hostname") != NODE or event["timestamp"] <= done_at + 0.2:
            continue
        last = event["processed"]
        if last == ran:
            break
    assert last == ran, f"heartbeat says {last} processed; {ran} tasks ran in {children}"
