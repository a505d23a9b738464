"""Prometheus metrics of real workers (``--metrics-port``) on a real redis-server.

``/metrics`` is parsed with prometheus_client's parser and its counters must equal the tasks
actually run: on prefork, where every child counts into its own file and the manager adds
them up at each scrape, and on solo. Names and labels are celery-exporter's.
"""

from __future__ import annotations

import glob
import os
import signal
import socket
import tempfile
import time
from collections.abc import Callable

import pytest

from celeriac import Celery
from tests.support.metrics_http import Scrape, get, scrape, wait_for
from tests.support.redis_server import free_port
from tests.support.workers import WorkerProcess

ADDS = 20
FAILS = 2
RETRIES = 2


def _client(redis_url: str, backend_url: str) -> Celery:
    return Celery("client", broker=redis_url, backend=backend_url)


def _run_batch(client: Celery) -> set[int]:
    """Send the batch and wait for every outcome; returns the pids that ran the adds."""
    adds = [client.send_task("metrics.add", (i, i)) for i in range(ADDS)]
    fails = [client.send_task("metrics.fail", (f"boom {i}",)) for i in range(FAILS)]
    flaky = client.send_task("metrics.flaky", (RETRIES,))
    pids = {int(r.get(timeout=30)["pid"]) for r in adds}
    for result in fails:
        with pytest.raises(ValueError):
            result.get(timeout=30)
    assert flaky.get(timeout=30) == RETRIES
    return pids


def _settled(port: int) -> Callable[[], bool]:
    """True once the worker has counted every outcome of the batch (results are stored
    just before the counters move)."""
    expected_finished = ADDS + FAILS + RETRIES + 1

    def check() -> bool:
        s = scrape(port)
        finished = (
            s.total("celery_task_succeeded_total")
            + s.total("celery_task_failed_total")
            + s.total("celery_task_retried_total")
        )
        return finished >= expected_finished and s.total("celery_worker_tasks_active") == 0

    return check


def _assert_counts(s: Scrape, host: str) -> None:
    runs = ADDS + FAILS + RETRIES + 1
    assert s.total("celery_task_received_total", hostname=host, queue_name="celery") == runs
    assert s.total("celery_task_started_total", hostname=host) == runs
    assert s.total("celery_task_succeeded_total", name="metrics.add") == ADDS
    assert s.total("celery_task_succeeded_total", name="metrics.flaky") == 1
    assert s.total("celery_task_failed_total", name="metrics.fail", exception="ValueError") == FAILS
    assert s.total("celery_task_failed_total", name="metrics.add") == 0
    assert s.total("celery_task_retried_total", name="metrics.flaky") == RETRIES
    # celery-exporter observes the runtime of succeeded tasks, in its default buckets
    assert s.total("celery_task_runtime_seconds_count", name="metrics.add") == ADDS
    assert s.total("celery_task_runtime_seconds_bucket", name="metrics.add", le="+Inf") == ADDS
    assert 0 < s.total("celery_task_runtime_seconds_sum", name="metrics.add") < ADDS * 5
    assert s.total("celery_task_runtime_seconds_bucket", name="metrics.add", le="0.005") <= ADDS
    assert s.total("celery_worker_up", hostname=host) == 1
    assert s.total("celery_worker_tasks_active", hostname=host) == 0
    assert s.has("celery_queue_length")
    assert s.total("celery_queue_length", queue_name="celery") == 0
    assert s.total("celeriac_worker_ready", hostname=host) == 1
    assert s.total("celeriac_child_tasks_processed_total", hostname=host) == runs


@pytest.mark.parametrize(
    ("pool", "concurrency"),
    [("prefork", 2), ("prefork", 4), ("solo", 1), ("threads", 4)],
    ids=str,
)
def test_counters_equal_the_tasks_run(
    worker_factory: Callable[..., WorkerProcess],
    redis_url: str,
    backend_url: str,
    pool: str,
    concurrency: int,
) -> None:
    port = free_port()
    worker = worker_factory(
        "metrics_tasks", "-P", pool, "-c", str(concurrency), "--metrics-port", str(port)
    )
    host = socket.gethostname()
    assert get(port, "/healthz") == (200, "ok\n")
    wait_for(lambda: get(port, "/readyz")[0] == 200, "/readyz answers 200")
    pids = _run_batch(_client(redis_url, backend_url))
    wait_for(_settled(port), "every outcome counted")
    s = scrape(port)
    _assert_counts(s, host)
    per_child = s.label_values("celeriac_child_tasks_processed_total", "child")
    assert s.label_values("celeriac_child_tasks_processed_total", "pool") == {pool}
    if pool == "prefork":
        # every count came from a child: the manager runs no task
        assert worker.pid not in pids
        assert pids <= {child.pid for child in worker.children()}
        assert per_child <= {str(i) for i in range(concurrency)}
        assert len(per_child) >= len(pids)
        assert s.total("celeriac_worker_pool_processes", pool="prefork") == concurrency
    else:
        assert pids == {worker.pid}
        assert per_child == {""}
        assert s.total("celeriac_worker_pool_processes", pool=pool) == concurrency
    private = glob.glob(os.path.join(tempfile.gettempdir(), f"celeriac-metrics-{worker.pid}-*"))
    assert len(private) == 1, private
    worker.stop()
    assert worker.process.returncode == 0, worker.log()
    assert not os.path.exists(private[0]), "the private multiprocess directory was left behind"


def test_a_busy_metrics_port_is_a_clear_error(
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = worker_factory(
            "metrics_tasks", "-P", "solo", "--metrics-port", str(port), wait_ready=False
        )
        assert worker.wait(30) != 0
    log = worker.log()
    assert f"--metrics-port {port}" in log and "choose a free port" in log, log
    assert "Traceback" not in log, log


def test_a_long_task_shows_as_active_and_keeps_the_worker_ready(
    worker_factory: Callable[..., WorkerProcess], redis_url: str, backend_url: str
) -> None:
    """Solo runs a 6 s task in its consume loop's own thread: the loop cannot go round, yet
    /readyz stays 200 (running a task is not being stuck); the task is active, and the
    messages behind it are in celery_queue_length."""
    port = free_port()
    worker_factory(
        "metrics_tasks", "-P", "solo", "--prefetch-multiplier", "1", "--metrics-port", str(port)
    )
    wait_for(lambda: get(port, "/readyz")[0] == 200, "/readyz answers 200")
    client = _client(redis_url, backend_url)
    long_one = client.send_task("metrics.sleep", (6.0,))
    wait_for(lambda: scrape(port).total("celery_worker_tasks_active") == 1, "the task is active")
    behind = [client.send_task("metrics.add", (i, i)) for i in range(4)]
    wait_for(
        lambda: scrape(port).total("celery_queue_length", queue_name="celery") >= 3,
        "the waiting messages counted in celery_queue_length",
    )
    # past --metrics-ready-within (5 s) with the loop inside the task: still ready
    deadline = time.monotonic() + 30
    polls = 0
    while not long_one.ready():
        assert time.monotonic() < deadline, "the 6 s task never finished"
        status, text = get(port, "/readyz")
        assert status == 200, text
        polls += 1
        time.sleep(0.25)  # pacing between probes, as a kubelet would
    assert polls >= 16  # probed across the whole 6 s
    for result in behind:
        result.get(timeout=30)
    wait_for(lambda: scrape(port).total("celery_task_succeeded_total") == 5, "all five counted")
    s = scrape(port)
    assert s.total("celery_worker_tasks_active") == 0
    assert s.total("celery_task_runtime_seconds_bucket", name="metrics.sleep", le="5.0") == 0
    assert s.total("celery_task_runtime_seconds_bucket", name="metrics.sleep", le="10.0") == 1


def test_rate_limit_parks_are_a_gauge(
    worker_factory: Callable[..., WorkerProcess], redis_url: str, backend_url: str
) -> None:
    """Tasks over their rate limit wait broker-side; flow control's own count shows in
    celeriac_rate_limit_parked and drains as they run."""
    port = free_port()
    worker_factory("flow_tasks", "-P", "solo", "--metrics-port", str(port))
    client = _client(redis_url, backend_url)
    for i in range(20):
        client.send_task("flow.global_rate", (i,))  # 5/s

    def parked() -> float:
        return scrape(port).total("celeriac_rate_limit_parked", name="flow.global_rate")

    wait_for(lambda: parked() >= 10, "most of them parked")
    wait_for(lambda: parked() < 10, "parked ones run at the rate", 10.0)


def test_restored_messages_of_a_killed_worker_are_counted(
    worker_factory: Callable[..., WorkerProcess], redis_url: str, backend_url: str
) -> None:
    """A worker SIGKILLed while it holds prefetched messages: the next worker on this host
    puts them back (it sees the process is gone) and counts them in
    celeriac_messages_restored_total."""
    client = _client(redis_url, backend_url)
    long_one = client.send_task("metrics.sleep", (3.0,))
    behind = [client.send_task("metrics.add", (i, i)) for i in range(3)]
    # all four wait in the queue, so the first fetch takes them together: the sleep runs
    # and the three adds are held behind it (its early ack rides the next fetch, not yet sent)
    first = worker_factory("metrics_tasks", "-P", "solo", "--prefetch-multiplier", "4")
    first.wait_for_log(f"metrics.sleep[{long_one.id}] received")
    first.signal(signal.SIGKILL)
    first.wait(10)
    port = free_port()
    worker_factory("metrics_tasks", "-P", "threads", "-c", "2", "--metrics-port", str(port))
    for result in [*behind, long_one]:  # the interrupted one too: its ack had not gone out
        result.get(timeout=30)
    restored = scrape(port).total("celeriac_messages_restored_total", hostname=socket.gethostname())
    assert restored == 4


def test_recycled_childrens_counts_outlive_them(
    worker_factory: Callable[..., WorkerProcess], redis_url: str, backend_url: str
) -> None:
    """--max-tasks-per-child 3: children come and go, and what each counted stays."""
    port = free_port()
    worker_factory(
        "metrics_tasks", "-P", "prefork", "-c", "2", "--max-tasks-per-child", "3",
        "--metrics-port", str(port),
    )  # fmt: skip
    client = _client(redis_url, backend_url)
    results = [client.send_task("metrics.add", (i, i)) for i in range(ADDS)]
    pids = {int(r.get(timeout=30)["pid"]) for r in results}
    assert len(pids) >= ADDS // 3  # the children were replaced as they went
    wait_for(
        lambda: scrape(port).total("celery_task_succeeded_total", name="metrics.add") == ADDS,
        "every recycled child's counts",
    )
    s = scrape(port)
    assert s.total("celeriac_child_tasks_processed_total") == ADDS
    assert s.total("celery_worker_tasks_active") == 0


def test_a_task_whose_child_was_killed_counts_as_lost(
    worker_factory: Callable[..., WorkerProcess], redis_url: str, backend_url: str
) -> None:
    """SIGKILL of the prefork child running a task: the manager settles it (FAILURE
    WorkerLostError, the default ack policy) and counts it in celeriac_tasks_lost_total."""
    import psutil

    from celeriac.exceptions import WorkerLostError

    port = free_port()
    worker = worker_factory(
        "metrics_tasks", "-P", "prefork", "-c", "1", "--metrics-port", str(port)
    )
    client = _client(redis_url, backend_url)
    result = client.send_task("metrics.sleep", (60.0,))
    worker.wait_for_log(f"metrics.sleep[{result.id}] received")
    (child,) = psutil.Process(worker.pid).children()
    child.kill()
    with pytest.raises(WorkerLostError):
        result.get(timeout=30)
    wait_for(
        lambda: scrape(port).total("celeriac_tasks_lost_total", name="metrics.sleep") == 1,
        "the lost task counted",
    )
