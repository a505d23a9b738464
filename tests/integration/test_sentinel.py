"""Redis Sentinel, with real parts: a redis-server master and replica and three
redis-sentinel processes on loopback (tests/support/redis_sentinel.py), the broker and the
result backend given as Celery's ``sentinel://`` URLs with ``master_name`` in the transport
options.

The failover tests SIGKILL the master and measure how long the sentinels take to promote
the replica, and how long after that the client and the worker go on.

What may be lost: Redis replicates asynchronously, so a failover can lose only writes the
master accepted and had not yet sent to the replica. The failover test queues its tasks
and waits until the replica's offset has reached the master's before it kills anything, so
none of those tasks may be lost (0). The worker's own writes (fetches, acks) may be lost in
that window too; with acks_late that comes back as a task run a second time, never as a
lost one, so duplicates are counted and reported, and bounded by the number of tasks the
worker held at the kill.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from celeriac import Celery
from celeriac.errors import BrokerError, ConfigurationError
from tests.support.redis_sentinel import (
    DOWN_AFTER_MS,
    MASTER_NAME,
    SentinelCluster,
    start_sentinel_cluster,
)
from tests.support.redis_server import RedisServer, free_port
from tests.support.workers import WorkerProcess, start_celeriac_worker

pytestmark = pytest.mark.timeout(150)

FOLLOW_S = 5.0  # the client and the worker follow the new master within failover + this
DRAIN_TASKS = 300
TASK_S = 0.02
CONCURRENCY = 2


def client_app(url: str, backend: str, **conf: Any) -> Celery:
    app = Celery("sentinel-client", broker=url, backend=backend)
    app.conf.broker_transport_options = {"master_name": MASTER_NAME}
    app.conf.result_backend_transport_options = {"master_name": MASTER_NAME}
    app.conf.broker_connection_timeout = 2.0
    for key, value in conf.items():
        setattr(app.conf, key, value)
    return app


@pytest.fixture(scope="module")
def cluster() -> Iterator[SentinelCluster]:
    started = start_sentinel_cluster()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def record_url(redis_server: RedisServer) -> str:
    """Where tasks record their runs: a plain Redis outside the failover."""
    return redis_server.url(6)


def start_worker(
    cluster: SentinelCluster, record_url: str, *args: str, ready_text: str = "ready."
) -> WorkerProcess:
    return start_celeriac_worker(
        "sentinel_tasks",
        cluster.url(0),
        *args,
        backend_url=cluster.url(1),
        ready_text=ready_text,
        env_extra={"TEST_RECORD_URL": record_url, "TEST_SENTINEL_MASTER": MASTER_NAME},
    )


# bad input


def test_a_sentinel_broker_url_without_master_name_names_the_setting_to_add() -> None:
    app = Celery("no-master", broker=f"sentinel://127.0.0.1:{free_port()}/0")
    with pytest.raises(ConfigurationError) as caught:
        app.send_task("sentinel.add", (1, 2))
    message = str(caught.value)
    assert "broker_transport_options" in message
    assert "master_name" in message
    app.close()


def test_a_sentinel_result_backend_without_master_name_names_its_setting() -> None:
    url = f"sentinel://127.0.0.1:{free_port()}/1"
    app = Celery("no-master", broker="memory://", backend=url)
    with pytest.raises(ConfigurationError) as caught:
        app.AsyncResult("x").state  # noqa: B018
    assert "result_backend_transport_options" in str(caught.value)
    assert "master_name" in str(caught.value)
    app.close()


def test_unreachable_sentinels_fail_within_the_connect_timeout_naming_hosts_not_passwords() -> None:
    ports = [free_port(), free_port()]
    url = f"sentinel://:master-s3cret@127.0.0.1:{ports[0]}/0;sentinel://127.0.0.1:{ports[1]}/0"
    app = client_app(url, url, task_publish_retry=False)
    app.conf.broker_transport_options = {
        "master_name": MASTER_NAME,
        "sentinel_kwargs": {"password": "sentinel-s3cret"},
    }
    started = time.monotonic()
    with pytest.raises(BrokerError) as caught:
        app.send_task("sentinel.add", (1, 2))
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert elapsed < app.conf.broker_connection_timeout, elapsed
    for port in ports:
        assert f"127.0.0.1:{port}" in message
    assert f"no sentinel named a master for {MASTER_NAME!r}" in message
    assert "the sentinels are running" in message  # and what to check
    assert "s3cret" not in message
    app.close()


# round trips


def test_round_trip_through_sentinel_on_a_solo_worker(
    cluster: SentinelCluster, record_url: str
) -> None:
    worker = start_worker(cluster, record_url, "-P", "solo")
    app = client_app(cluster.url(0), cluster.url(1))
    try:
        assert app.send_task("sentinel.add", (2, 3)).get(timeout=20) == 5
        # remote control (the pidbox) goes through the sentinels' master too
        replies = app.control.ping(timeout=2.0)
        assert any("pong" in str(reply) for reply in replies), replies
    finally:
        app.close()
        worker.stop()


def test_round_trip_through_sentinel_on_a_prefork_worker(
    cluster: SentinelCluster, record_url: str
) -> None:
    worker = start_worker(cluster, record_url, "-P", "prefork", "-c", str(CONCURRENCY))
    app = client_app(cluster.url(0), cluster.url(1))
    try:
        results = [app.send_task("sentinel.pid") for _ in range(20)]
        pids = {r.get(timeout=20) for r in results}
        children = {p.pid for p in worker.children()}
        assert pids and pids <= children, (pids, children)
        assert worker.pid not in pids
        # every child's own connections were made through the sentinels
        master = cluster.client()
        try:
            names = {str(c.get("name")) for c in master.client_list()}
        finally:
            master.close()
        assert sum(1 for n in names if n.startswith("celeriac.worker")) >= CONCURRENCY, names
        replies = app.control.ping(timeout=2.0)
        assert any("pong" in str(reply) for reply in replies), replies
    finally:
        app.close()
        worker.stop()


def test_a_celery_client_round_trips_through_sentinel_with_a_celeriac_worker(
    cluster: SentinelCluster, record_url: str
) -> None:
    """The real celery package (kombu's sentinel transport, Celery's SentinelBackend) with
    the same URLs and transport options."""
    import celery  # type: ignore[import-untyped]

    worker = start_worker(cluster, record_url, "-P", "solo")
    app = celery.Celery("celery-client", broker=cluster.url(0), backend=cluster.url(1))
    app.conf.broker_transport_options = {"master_name": MASTER_NAME}
    app.conf.result_backend_transport_options = {"master_name": MASTER_NAME}
    try:
        assert app.send_task("sentinel.add", (20, 22)).get(timeout=20) == 42
        assert any("pong" in str(reply) for reply in app.control.ping(timeout=2.0))
    finally:
        app.close()
        worker.stop()


# failover


def replicated(cluster: SentinelCluster, timeout_s: float = 10.0) -> None:
    """Wait until the replica has every write the master took so far."""
    master = cluster.client(cluster.master.port)
    replica = cluster.client(cluster.replica.port)
    try:
        target = int(master.info("replication")["master_repl_offset"])
        cluster.wait_until(
            lambda: int(replica.info("replication")["slave_repl_offset"]) >= target,
            timeout_s,
            "replica catches up",
        )
    finally:
        master.close()
        replica.close()


def first_round_trip(app: Celery, deadline_s: float) -> tuple[float, float]:
    """Send a probe task (on the worker's first queue) and wait for its result, over and
    over until one round trip works: (when the first send was accepted, when a result
    came back), as time.monotonic()."""
    sent_at = 0.0
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            result = app.send_task("sentinel.add", (1, 1), queue="probe")
            sent_at = sent_at or time.monotonic()
            if result.get(timeout=max(0.1, min(2.0, deadline - time.monotonic()))) == 2:
                return sent_at, time.monotonic()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # pacing a retry, not waiting for an event


def test_failover_mid_drain_the_worker_and_client_follow_and_no_queued_task_is_lost(
    cluster: SentinelCluster, record_url: str
) -> None:
    run = f"failover-{uuid.uuid4().hex[:8]}"
    record = redis.Redis.from_url(record_url)
    app = client_app(cluster.url(0), cluster.url(1))
    worker = start_worker(
        cluster, record_url, "-P", "prefork", "-c", str(CONCURRENCY), "-Q", "probe,celery"
    )
    try:
        for i in range(DRAIN_TASKS):
            app.send_task("sentinel.record", (run, f"t{i}", TASK_S))
        replicated(cluster)  # from here on, async replication can lose none of them
        cluster.wait_until(
            lambda: int(record.scard(f"{run}:done")) >= DRAIN_TASKS // 4, 30.0, "drain starts"
        )
        done_at_kill = int(record.scard(f"{run}:done"))
        killed = cluster.kill_master()
        killed_at = time.monotonic()
        failover_s = cluster.wait_failover(killed.port, 30.0)
        sent_at, answered_at = first_round_trip(app, failover_s + FOLLOW_S + 10.0)
        cluster.wait_until(
            lambda: int(record.scard(f"{run}:done")) >= DRAIN_TASKS, 60.0, "the drain finishes"
        )
        raw_runs: Any = record.hgetall(f"{run}:runs")
        raw_done: Any = record.smembers(f"{run}:done")
        runs = {k.decode(): int(v) for k, v in raw_runs.items()}
        done = {m.decode() for m in raw_done}
        lost = [f"t{i}" for i in range(DRAIN_TASKS) if f"t{i}" not in done]
        duplicates = sum(n - 1 for n in runs.values())
        follow_s = answered_at - killed_at
        print(
            f"\nsentinel failover: {DRAIN_TASKS} acks_late tasks, master SIGKILLed after "
            f"{done_at_kill} done; sentinels promoted the replica in {failover_s:.2f} s "
            f"(down-after {DOWN_AFTER_MS} ms); first send accepted "
            f"{sent_at - killed_at:.2f} s and first round trip (client -> worker -> result) "
            f"done {follow_s:.2f} s after the kill; lost {len(lost)}, duplicates {duplicates}"
        )
        assert follow_s <= failover_s + FOLLOW_S, (follow_s, failover_s)
        assert lost == [], lost
        # only tasks the worker held when the master died can run twice
        assert duplicates <= CONCURRENCY * 4 + CONCURRENCY, duplicates
        assert worker.process.poll() is None, worker.log()
    finally:
        app.close()
        worker.stop()
        record.close()
    cluster.revive_as_replica(killed)


def test_failover_while_idle_the_waiting_worker_and_result_waiter_follow(
    cluster: SentinelCluster, record_url: str
) -> None:
    """The idle fast paths (the worker's blocking move into its inbox and its tracking
    connection, the client's RESP3 result waiter) are parked on the master when it dies:
    one child runs a slow task across the kill, the other waits for work."""
    worker = start_worker(
        cluster, record_url, "-P", "prefork", "-c", str(CONCURRENCY), "-Q", "probe,celery"
    )
    app = client_app(cluster.url(0), cluster.url(1))
    run = f"idle-{uuid.uuid4().hex[:8]}"
    try:
        assert app.send_task("sentinel.add", (1, 2)).get(timeout=20) == 3  # warm, then idle
        # a task that runs across the kill: the client waits for its result meanwhile
        slow = app.send_task("sentinel.record", (run, "slow", 3.0))
        replicated(cluster)
        record = redis.Redis.from_url(record_url)
        try:
            cluster.wait_until(lambda: record.llen(f"{run}:started") > 0, 20.0, "slow starts")
        finally:
            record.close()
        killed = cluster.kill_master()
        killed_at = time.monotonic()
        failover_s = cluster.wait_failover(killed.port, 30.0)
        try:
            outcome = slow.get(timeout=failover_s + FOLLOW_S + 10.0)
        except Exception as exc:
            raise AssertionError(f"{exc}\nworker log:\n{worker.log()[-6000:]}") from exc
        assert outcome == "slow"
        _, answered_at = first_round_trip(app, failover_s + FOLLOW_S + 10.0)
        follow_s = answered_at - killed_at
        print(
            f"\nsentinel failover while idle: promoted in {failover_s:.2f} s, the waiting "
            f"result came back and a new round trip was done {follow_s:.2f} s after the kill"
        )
        assert follow_s <= failover_s + FOLLOW_S, (follow_s, failover_s)
        assert worker.process.poll() is None, worker.log()
    finally:
        app.close()
        worker.stop()
    cluster.revive_as_replica(killed)


def test_coordinated_failover_mid_drain_leaves_the_demoted_master_behind(
    cluster: SentinelCluster, record_url: str
) -> None:
    """``SENTINEL FAILOVER``: the old master stays up. Sentinel promotes the replica at once
    but turns the old master into a replica only when it next polls it (INFO, every 10 s);
    until then the old master still takes writes from whoever is connected to it. Every
    process lets go of it on the sentinels' ``+switch-master`` announcement, so the worker
    and the client follow within the failover time plus 5 s, not 10 s later. Acks written
    to the old master before that are lost with its data, so acks_late tasks run again:
    duplicates, counted; none of the tasks queued (and replicated) before is lost."""
    tasks = 100
    run = f"switch-{uuid.uuid4().hex[:8]}"
    record = redis.Redis.from_url(record_url)
    app = client_app(cluster.url(0), cluster.url(1))
    worker = start_worker(
        cluster, record_url, "-P", "prefork", "-c", str(CONCURRENCY), "-Q", "probe,celery"
    )
    try:
        for i in range(tasks):
            app.send_task("sentinel.record", (run, f"t{i}", TASK_S))
        replicated(cluster)
        cluster.wait_until(lambda: int(record.scard(f"{run}:done")) >= 20, 30.0, "drain starts")
        old_port = cluster.master.port
        sentinel = cluster.sentinel_client()
        try:
            sentinel.sentinel_failover(MASTER_NAME)
        finally:
            sentinel.close()
        switched_at = time.monotonic()
        failover_s = cluster.wait_failover(old_port, 30.0)
        _, answered_at = first_round_trip(app, failover_s + FOLLOW_S + 10.0)
        cluster.wait_until(
            lambda: int(record.scard(f"{run}:done")) >= tasks, 60.0, "the drain finishes"
        )
        raw_runs: Any = record.hgetall(f"{run}:runs")
        raw_done: Any = record.smembers(f"{run}:done")
        lost = [f"t{i}" for i in range(tasks) if f"t{i}".encode() not in raw_done]
        duplicates = sum(int(n) - 1 for n in raw_runs.values())
        follow_s = answered_at - switched_at
        print(
            f"\nsentinel coordinated failover: switched in {failover_s:.2f} s, first round "
            f"trip {follow_s:.2f} s after SENTINEL FAILOVER; lost {len(lost)} of {tasks}, "
            f"duplicates {duplicates}"
        )
        assert follow_s <= failover_s + FOLLOW_S, (follow_s, failover_s)
        assert lost == [], lost
        assert worker.process.poll() is None, worker.log()
    finally:
        app.close()
        worker.stop()
        record.close()


def test_sentinel_url_parts_are_read_as_celery_reads_them() -> None:
    from celeriac.redis_connect import parse_sentinel_url

    target = parse_sentinel_url(
        "sentinel://:p%40ss@127.0.0.1:26379/3;sentinel://127.0.0.1:26380/3;sentinel://h3"
    )
    assert target.hosts == (("127.0.0.1", 26379), ("127.0.0.1", 26380), ("h3", 26379))
    assert (target.db, target.password, target.username) == (3, "p@ss", None)
    with pytest.raises(ConfigurationError, match="sentinel://:password@host:26379/0"):
        parse_sentinel_url("sentinel://127.0.0.1:26379/0;redis://127.0.0.1:6379/0")
    with pytest.raises(ConfigurationError, match="not a number"):
        parse_sentinel_url("sentinel://127.0.0.1:26379/zero")


def test_sentinel_url_is_shown_without_passwords() -> None:
    from celeriac.urls import safe_url

    url = "sentinel://:pw1@127.0.0.1:26379/0;sentinel://u:pw2@127.0.0.1:26380/0"
    shown = safe_url(url)
    assert "pw1" not in shown and "pw2" not in shown
    assert shown == "sentinel://:***@127.0.0.1:26379/0;sentinel://u:***@127.0.0.1:26380/0"
