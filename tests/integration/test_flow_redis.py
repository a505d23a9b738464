"""Flow control with real workers on a real redis-server: cluster-wide rate limits,
Celery's per-worker scope, per-key buckets, concurrency caps (and a SIGKILLed holder), unique
tasks, and a parked task's visible state. Sizes are for CI; bench/ has the full runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest
import redis

from celeriac import AsyncResult, Celery, states
from tests.support.workers import WorkerProcess, subprocess_env

Factory = Callable[..., WorkerProcess]
TASKS = "flow_tasks"


@pytest.fixture
def client(redis_url: str, backend_url: str) -> Celery:
    return Celery("client", broker=redis_url, backend=backend_url)


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def runs(r: redis.Redis, name: str) -> list[tuple[float, float, int, str]]:
    found = []
    for line in r.lrange(f"runs:{name}", 0, -1):
        start, end, pid, key = (line if isinstance(line, str) else line.decode()).split()
        found.append((float(start), float(end), int(pid), key))
    return sorted(found)


def start_workers(factory: Factory, count: int, *args: str) -> list[WorkerProcess]:
    workers = [factory(TASKS, "-n", f"flow{i}@%h", *args, wait_ready=False) for i in range(count)]
    for worker in workers:
        worker.wait_for_log("ready.", timeout_s=30)
    return workers


def max_in_window(starts: list[float], window_s: float) -> int:
    best, low = 0, 0
    for high, at in enumerate(starts):
        while starts[low] < at - window_s:
            low += 1
        best = max(best, high - low + 1)
    return best


def rate_of(starts: list[float]) -> float:
    return (len(starts) - 1) / (starts[-1] - starts[0])


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = now = 0
    for _, step in points:
        now += step
        best = max(best, now)
    return best


@pytest.mark.parametrize("count", [50, pytest.param(300, marks=pytest.mark.slow)])
def test_global_rate_limit_holds_across_three_prefork_workers(
    worker_factory: Factory, client: Celery, r: redis.Redis, count: int
) -> None:
    start_workers(worker_factory, 3, "-P", "prefork", "-c", "2")
    results = [client.send_task("flow.global_rate", (i,)) for i in range(count)]
    assert sorted(result.get(timeout=60) for result in results) == list(range(count))  # 0 lost
    starts = [run[0] for run in runs(r, "global_rate")]
    assert len(starts) == count
    busiest = max_in_window(starts, 10.0)
    rate = rate_of(starts)
    print(f"global 5/s over 3 workers: {rate:.2f}/s, busiest 10 s window {busiest} runs")
    assert busiest <= 5 * 10 + 1
    assert abs(rate - 5.0) <= 0.5


def test_per_worker_scope_is_celerys_two_workers_run_twice_the_limit(
    worker_factory: Factory, client: Celery, r: redis.Redis
) -> None:
    start_workers(worker_factory, 2, "-P", "prefork", "-c", "2")
    results = [client.send_task("flow.worker_rate", (i,)) for i in range(40)]
    for result in results:
        result.get(timeout=60)
    starts = [run[0] for run in runs(r, "worker_rate")]
    assert len({run[3] for run in runs(r, "worker_rate")}) == 2  # both workers ran some
    rate = rate_of(starts)
    busiest = max_in_window(starts, 2.0)
    print(f"per-worker 5/s on 2 workers: {rate:.2f}/s together, busiest 2 s window {busiest}")
    # each worker's bucket admits 5/s; one start late by a few ms may share a window
    assert busiest <= 2 * (5 * 2 + 1) + 1
    assert 8.5 <= rate <= 11.0


def test_per_key_buckets_run_each_tenant_at_its_own_rate(
    worker_factory: Factory, client: Celery, r: redis.Redis
) -> None:
    start_workers(worker_factory, 1, "-P", "prefork", "-c", "2")
    results = []
    for i in range(8):
        for tenant in ("acme", "globex"):
            results.append(client.send_task("flow.tenant", (i,), {"tenant": tenant}))
    for result in results:
        result.get(timeout=60)
    found = runs(r, "tenant")
    rates = {}
    for tenant in ("acme", "globex"):
        starts = [run[0] for run in found if run[3] == tenant]
        assert max_in_window(starts, 2.0) <= 2 * 2 + 1
        rates[tenant] = rate_of(starts)
    print(f"per-key 2/s: {rates}")
    for rate in rates.values():
        assert 1.7 <= rate <= 2.2  # each at 2/s: the other tenant does not slow it down


def test_max_concurrency_caps_runs_across_three_workers(
    worker_factory: Factory, client: Celery, r: redis.Redis
) -> None:
    start_workers(worker_factory, 3, "-P", "prefork", "-c", "2")
    results = [client.send_task("flow.capped", (i, 0.3)) for i in range(12)]
    assert sorted(result.get(timeout=60) for result in results) == list(range(12))
    intervals = [(run[0], run[1]) for run in runs(r, "capped")]
    overlap = max_overlap(intervals)
    print(f"max_concurrency=2 over 3 workers x 2: max overlap {overlap}")
    assert overlap == 2


def test_sigkilled_holder_frees_its_slot_within_ten_seconds(
    worker_factory: Factory, client: Celery, r: redis.Redis
) -> None:
    workers = start_workers(worker_factory, 2, "-P", "prefork", "-c", "2")
    first = client.send_task("flow.hold_slot", (60,))
    deadline = time.monotonic() + 20
    while not r.llen("runs:hold_slot_started"):
        assert time.monotonic() < deadline, "the slot holder never started"
        time.sleep(0.05)
    pid = runs(r, "hold_slot_started")[0][2]
    holder = next(w for w in workers if pid in [kid.pid for kid in w.children()])
    kids = holder.children()
    holder.signal(signal.SIGKILL)  # the whole worker dies: manager and children
    for kid in kids:
        os.kill(kid.pid, signal.SIGKILL)
    killed_at = time.time()
    # the next run of the capped task (the held message, restored from the dead worker, or
    # this one) starts on the other worker once the dead worker's lease has lapsed
    client.send_task("flow.hold_slot", (0,))
    deadline = time.monotonic() + 15
    while r.llen("runs:hold_slot_started") < 2:
        assert time.monotonic() < deadline, "the slot was never free again"
        time.sleep(0.05)
    started = runs(r, "hold_slot_started")[1][0]
    print(f"slot free again {started - killed_at:.2f} s after the SIGKILL")
    assert started - killed_at <= 10.0
    assert first.state != states.SUCCESS
    client.control.revoke(first.id, terminate=True)  # the restored copy: stop it now


def test_parked_task_is_received_with_parked_until(worker_factory: Factory, client: Celery) -> None:
    start_workers(worker_factory, 1, "-P", "threads", "-c", "2")
    first = client.send_task("flow.parked_limit", (1,))
    assert first.get(timeout=20) == 1
    parked = client.send_task("flow.parked_limit", (2,))
    deadline = time.monotonic() + 20
    meta = client.backend.get_meta(parked.id) or {}
    while meta.get("status") != states.RECEIVED:
        assert time.monotonic() < deadline, f"never parked: {meta}"
        time.sleep(0.05)
        meta = client.backend.get_meta(parked.id) or {}
    assert meta["parked_until"] > time.strftime("%Y-%m-%dT", time.gmtime())
    replies = client.control.inspect(timeout=5, limit=1).stats() or {}
    flow = next(iter(replies.values()))["flow_control"]
    assert flow["parked"] == 1
    assert flow["tasks"]["flow.parked_limit"]["rate_limit"] == "0.0166667/s"


def test_unlimited_tasks_run_while_limited_ones_are_parked(
    worker_factory: Factory, client: Celery
) -> None:
    start_workers(worker_factory, 1, "-P", "prefork", "-c", "2")
    limited = [client.send_task("flow.parked_limit", (i,)) for i in range(50)]
    free = [client.send_task("flow.unlimited", (i,)) for i in range(200)]
    assert [result.get(timeout=20) for result in free] == list(range(200))
    assert sum(result.state == states.SUCCESS for result in limited) == 1


def test_key_callable_that_raises_fails_that_task_only(
    worker_factory: Factory, client: Celery
) -> None:
    start_workers(worker_factory, 1, "-P", "prefork", "-c", "1")
    failed = client.send_task("flow.bad_key", (1,))
    with pytest.raises(Exception, match=r"rate_limit_key of task 'flow\.bad_key' failed"):
        failed.get(timeout=20)
    assert client.send_task("flow.unlimited", (7,)).get(timeout=20) == 7


UNIQUE_SENDER = """
import sys, threading
sys.path.insert(0, sys.argv[1])
from flow_tasks import unique_job
sys.stdin.readline()  # go: sent together with the test's own threads
ids = []
def send():
    for _ in range(5):
        ids.append(unique_job.apply_async(("k",)).id)
threads = [threading.Thread(target=send) for _ in range(10)]
for t in threads: t.start()
for t in threads: t.join()
print("\\n".join(ids))
"""


def test_unique_sends_from_threads_and_processes_run_once(
    worker_factory: Factory, redis_url: str, backend_url: str, r: redis.Redis
) -> None:
    start_workers(worker_factory, 1, "-P", "prefork", "-c", "2")
    support = os.path.join(os.path.dirname(__file__), "..", "support")
    env = subprocess_env(redis_url, backend_url)
    other = subprocess.Popen(
        [sys.executable, "-c", UNIQUE_SENDER, support],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    client = Celery("client", broker=redis_url, backend=backend_url)

    # the client declares the task as the worker does: the lock is the task name's and key's
    @client.task(name="flow.unique_job", unique_for=60, unique_key="{key}")
    def unique_job(key: str, sleep_s: float = 2.0) -> str:
        return key  # runs on the worker

    try:
        ids: list[str] = []

        def send() -> None:
            for _ in range(5):
                ids.append(unique_job.apply_async(("k",)).id)

        threads = [threading.Thread(target=send) for _ in range(10)]
        for thread in threads:
            thread.start()
        out, _ = other.communicate(b"go\n", timeout=60)  # the other process sends meanwhile
        for thread in threads:
            thread.join()
        ids += out.decode().split()
        assert len(ids) == 100
        assert len(set(ids)) == 1
        assert client.AsyncResult(ids[0]).get(timeout=20) == "k"
        assert len(runs(r, "unique_job")) == 1
        again = unique_job.apply_async(("k", 0.0))
        assert again.id != ids[0]
        assert again.get(timeout=20) == "k"
        assert len(runs(r, "unique_job")) == 2
    finally:
        client.close()
        if other.poll() is None:
            other.kill()
            other.wait()


def test_rate_limit_command_takes_effect_and_a_bad_value_keeps_the_old_limit(
    worker_factory: Factory, client: Celery
) -> None:
    start_workers(worker_factory, 1, "-P", "prefork", "-c", "2")
    bad = client.control.rate_limit("flow.unlimited", "10/x", reply=True, timeout=5, limit=1)
    assert bad and "error" in next(iter(bad[0].values()))
    assert client.send_task("flow.unlimited", (1,)).get(timeout=20) == 1  # still unlimited
    good = client.control.rate_limit("flow.unlimited", "1/m", reply=True, timeout=5, limit=1)
    assert good and "ok" in next(iter(good[0].values()))
    # every process of the worker applies it before its next fetch: a task already being
    # fetched may still run unlimited; soon after, one runs a minute and the rest park
    states_seen = [settle(client.send_task("flow.unlimited", (i,))) for i in range(6)]
    assert states_seen[-2:] == [states.RECEIVED, states.RECEIVED], states_seen


def test_a_child_forked_after_a_rate_limit_command_follows_it(
    worker_factory: Factory, client: Celery
) -> None:
    (worker,) = start_workers(worker_factory, 1, "-P", "prefork", "-c", "1")
    good = client.control.rate_limit("flow.unlimited", "1/m", reply=True, timeout=5, limit=1)
    assert good and "ok" in next(iter(good[0].values()))
    (child,) = worker.children()
    child.kill()  # the manager forks a replacement, after the command
    child.wait(timeout=10)
    deadline = time.monotonic() + 20
    while not [c for c in worker.children() if c.pid != child.pid]:
        assert time.monotonic() < deadline, "no replacement child"
        time.sleep(0.05)
    states_seen = [settle(client.send_task("flow.unlimited", (i,))) for i in range(3)]
    # the new child runs at most one a minute: the first may run, the rest park
    assert states_seen[1:] == [states.RECEIVED, states.RECEIVED], states_seen


def settle(result: AsyncResult) -> str:
    """SUCCESS or RECEIVED (parked), whichever the worker makes of it first."""
    deadline = time.monotonic() + 20
    while result.state not in (states.SUCCESS, states.RECEIVED):
        assert time.monotonic() < deadline, result.state
        time.sleep(0.02)
    return str(result.state)
