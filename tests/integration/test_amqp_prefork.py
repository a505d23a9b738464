"""The seed's model on RabbitMQ: every prefork child consumes on its own connection, and a
dead child's unacked messages are redelivered by RabbitMQ at once (no visibility timeout).
Also a short kill loop: acks_late tasks, SIGKILLs of children and whole workers, 0 lost."""

from __future__ import annotations

import time
from collections.abc import Iterator

import amqp
import psutil
import pytest

from celeriac import Celery
from tests.support.kill_loop import KillLoop, KillLoopConfig, KillLoopReport, seed_from_env
from tests.support.rabbitmq import RabbitNode
from tests.support.redis_server import RedisServer
from tests.support.workers import start_celeriac_worker

pytest_plugins = ["tests.support.rabbitmq_fixtures"]
pytestmark = pytest.mark.timeout(150)

TASKS = 150
MIN_KILLS = 5


def test_killed_childs_acks_late_task_is_redelivered_at_once(
    amqp_url: str, backend_url: str, rabbit_node: RabbitNode
) -> None:
    worker = start_celeriac_worker(
        "amqp_tasks", amqp_url, "-P", "prefork", "-c", "2", "-l", "info", backend_url=backend_url
    )
    client = Celery("prefork_client", broker=amqp_url, backend=backend_url)
    try:
        deadline = time.monotonic() + 20
        while len(worker.children()) < 2:  # polling the process table, bounded
            assert time.monotonic() < deadline, worker.log()
            time.sleep(0.05)
        children = worker.children()
        # each child has its own AMQP connection: the manager's, the children's
        result = client.send_task("amqp.sleep", (2.0,))
        worker.wait_for_log("amqp.sleep[" + result.id + "] received")
        killed = {kid.pid for kid in children}
        for kid in children:
            kid.kill()  # SIGKILL both: whichever held it dies with it unacked
        killed_at = time.monotonic()
        ran_in = result.get(timeout=30)
        # redelivered at once: the 2 s task ran again right after the kill
        assert time.monotonic() - killed_at < 2.0 + 6.0
        assert ran_in not in killed
        assert ran_in in {kid.pid for kid in worker.children()}
        assert "put back on its queue" in worker.log()
    finally:
        client.close()
        worker.stop()


def test_ready_means_the_queues_exist_for_a_publisher_that_does_not_declare(
    amqp_url: str, backend_url: str, rabbit_node: RabbitNode
) -> None:
    """A producer that only publishes (no queue declare) right after "ready." is not lost:
    the worker declared its queues, exchanges and bindings before saying it."""
    rabbit_node.reset(("celery", "amqp-routed"))
    worker = start_celeriac_worker(
        "amqp_tasks", amqp_url, "-P", "prefork", "-c", "2", "-Q", "celery,amqp-routed",
        backend_url=backend_url,
    )  # fmt: skip
    client = Celery("ready_client", broker=amqp_url, backend=backend_url)
    try:
        conn = amqp.Connection(f"127.0.0.1:{rabbit_node.port}")
        conn.connect()
        try:
            channel = conn.channel()
            for task_id, exchange in (("ready-1", "celery"), ("ready-2", "amqp-routed")):
                channel.basic_publish(
                    amqp.Message(
                        b'[[2, 3], {}, {"callbacks": null, "errbacks": null, "chain": null}]',
                        content_type="application/json",
                        content_encoding="utf-8",
                        application_headers={"id": task_id, "task": "amqp.add", "lang": "py"},
                        correlation_id=task_id,
                    ),
                    exchange=exchange,
                    routing_key=exchange,
                    mandatory=True,  # an unroutable message would come back, not vanish
                )
        finally:
            conn.close()
        assert client.AsyncResult("ready-1").get(timeout=20) == 5
        assert client.AsyncResult("ready-2").get(timeout=20) == 5
    finally:
        client.close()
        worker.stop()


@pytest.fixture(scope="module")
def report(rabbit_node: RabbitNode, redis_server: RedisServer) -> Iterator[KillLoopReport]:
    rabbit_node.reset()
    redis_server.client(1).flushdb()
    redis_server.client(2).flushdb()
    config = KillLoopConfig(
        broker_url=rabbit_node.url,
        backend_url=redis_server.url(1),
        record_url=redis_server.url(2),
        tasks=TASKS,
        min_kills=MIN_KILLS,
        seed=seed_from_env(),
        task_seconds=(0.02, 0.1),
        kill_gap_s=(0.8, 1.6),
    )
    result = KillLoop(config).run()
    print(f"\n[amqp] {result.summary()}")
    yield result


def test_kill_loop_on_rabbitmq_loses_nothing(report: KillLoopReport) -> None:
    assert len(report.kills) >= MIN_KILLS, report.summary()
    assert report.lost == [], f"lost {report.lost[:20]}: {report.summary()}"
    assert report.unrestored == [], report.summary()
    assert report.orphans == [], report.summary()


def test_kill_loop_on_rabbitmq_duplicates_only_tasks_whose_process_died(
    report: KillLoopReport,
) -> None:
    assert report.unexplained_duplicates == [], report.summary()


def test_kill_loop_on_rabbitmq_restores_killed_work_within_seconds(
    report: KillLoopReport,
) -> None:
    assert report.restore_s, f"no kill hit a running task: {report.summary()}"
    assert report.restore_settled_max_s < 10.0, report.summary()


def test_prefork_children_each_hold_their_own_connection(
    amqp_url: str, backend_url: str, rabbit_node: RabbitNode
) -> None:
    worker = start_celeriac_worker(
        "amqp_tasks", amqp_url, "-P", "prefork", "-c", "2", backend_url=backend_url
    )
    try:
        kids = [kid.pid for kid in worker.children()]
        deadline = time.monotonic() + 10
        listed = ""
        while time.monotonic() < deadline:
            listed = rabbit_node.ctl("list_consumers", "queue_name", "--no-table-headers")
            if listed.split().count("celery") >= 2:
                break
            time.sleep(0.2)  # polling RabbitMQ's view, bounded by the deadline
        assert listed.split().count("celery") == 2, listed  # one consumer per child
        names = rabbit_node.ctl("list_connections", "client_properties")
        for pid in kids:
            assert f"celeriac.child0.{pid}" in names or f"celeriac.child1.{pid}" in names
        assert psutil.pid_exists(worker.pid)
    finally:
        worker.stop()
