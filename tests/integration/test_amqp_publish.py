"""The AMQP publish path on a real RabbitMQ node: a publisher blocked by a memory alarm waits
up to confirm_timeout and then raises a clear error (or completes when the alarm clears in
time), and ``confirm_publish=False`` turns publisher confirms off as Celery's default is."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from celeriac import Celery
from celeriac.errors import BrokerError, ConfigurationError
from tests.support.rabbitmq import RabbitNode, vhost_url
from tests.support.workers import start_celeriac_worker

pytest_plugins = ["tests.support.rabbitmq_fixtures"]
pytestmark = pytest.mark.timeout(120)

ALARM_TIMEOUT_S = 2.0


def _wait_for(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # each check is a rabbitmqctl call: it paces the loop
        assert time.monotonic() < deadline, f"timed out waiting for {what}"


def _memory_alarm_on(node: RabbitNode) -> bool:
    return "memory" in node.ctl("eval", "rabbit_alarm:get_alarms().")


@contextlib.contextmanager
def memory_alarm(node: RabbitNode) -> Iterator[None]:
    """RabbitMQ's memory alarm on for the block; the node is restored (and the alarm
    seen cleared) whatever happens, since the other tests share it."""
    try:
        node.ctl("set_vm_memory_high_watermark", "0.0001")
        _wait_for(lambda: _memory_alarm_on(node), "the memory alarm")
        yield
    finally:
        node.ctl("set_vm_memory_high_watermark", "0.4")
        _wait_for(lambda: not _memory_alarm_on(node), "the memory alarm to clear")


def _connection_states(node: RabbitNode) -> list[str]:
    return node.ctl("list_connections", "state").split()


def test_a_blocked_send_raises_a_clear_error_and_sends_succeed_after_the_alarm(
    amqp_url: str, backend_url: str, rabbit_node: RabbitNode
) -> None:
    client = Celery("alarm_client", broker=amqp_url, backend=backend_url)
    client.conf.broker_transport_options = {"confirm_timeout": ALARM_TIMEOUT_S}
    try:
        client.send_task("amqp.add", (1, 1))  # connected and declared before the alarm
        with memory_alarm(rabbit_node):
            started = time.monotonic()
            with pytest.raises(BrokerError) as raised:
                client.send_task("amqp.add", (2, 2))
            waited = time.monotonic() - started
        message = str(raised.value)
        assert ALARM_TIMEOUT_S - 0.2 <= waited <= ALARM_TIMEOUT_S + 3.0
        assert f"127.0.0.1:{rabbit_node.port}" in message
        assert "guest:guest" not in message  # the user is shown, never the password
        assert "resource alarm" in message and "memory" in message
        assert "send them again" in message
        worker = start_celeriac_worker("amqp_tasks", amqp_url, backend_url=backend_url)
        try:
            assert client.send_task("amqp.add", (3, 4)).get(timeout=30) == 7
        finally:
            worker.stop()
    finally:
        client.close()


def test_a_send_waiting_on_an_alarm_completes_when_the_alarm_clears(
    amqp_url: str, rabbit_node: RabbitNode
) -> None:
    client = Celery("alarm_waiter", broker=amqp_url)
    client.conf.broker_transport_options = {"confirm_timeout": 60.0}
    outcome: list[BaseException | str] = []
    done = threading.Event()

    def send() -> None:
        try:
            outcome.append(client.send_task("amqp.add", (5, 6)).id)
        except BaseException as exc:
            outcome.append(exc)
        finally:
            done.set()

    sender = threading.Thread(target=send, daemon=True)
    try:
        client.send_task("amqp.add", (0, 0))
        client.broker.purge(["celery"])
        with memory_alarm(rabbit_node):
            sender.start()
            _wait_for(lambda: "blocked" in _connection_states(rabbit_node), "a blocked publisher")
            assert not done.is_set(), f"the send returned under the alarm: {outcome}"
        assert done.wait(30), "the waiting send did not complete once the alarm cleared"
        assert isinstance(outcome[0], str), outcome
        assert client.broker.queue_length("celery") == 1
    finally:
        sender.join(60)
        client.close()


def test_without_confirms_the_sends_that_returned_under_an_alarm_arrive_after_it(
    amqp_url: str, rabbit_node: RabbitNode
) -> None:
    client = Celery("alarm_unconfirmed", broker=amqp_url)
    client.conf.broker_transport_options = {
        "confirm_publish": False,
        "confirm_timeout": ALARM_TIMEOUT_S,
    }
    returned: list[str] = []
    raised: BrokerError | None = None
    try:
        client.send_task("amqp.add", (0, 0))
        client.broker.purge(["celery"])
        with memory_alarm(rabbit_node):
            # the first sends go into the socket; once RabbitMQ's connection.blocked is in,
            # a send waits for the alarm to clear and then raises
            deadline = time.monotonic() + 20
            while raised is None and time.monotonic() < deadline:
                try:
                    returned.append(client.send_task("amqp.add", (1, 1)).id)
                except BrokerError as exc:
                    raised = exc
        assert raised is not None and "resource alarm" in str(raised), raised
        assert returned, "no send returned before RabbitMQ reported the alarm"
        deadline = time.monotonic() + 20
        while client.broker.queue_length("celery") < len(returned):
            assert time.monotonic() < deadline, "sends that returned under the alarm are lost"
            time.sleep(0.05)  # polling the queue length, bounded by the deadline
        assert client.broker.queue_length("celery") == len(returned)
    finally:
        client.close()


def _confirm_modes(node: RabbitNode, vhost: str) -> list[str]:
    rows = [line.split() for line in node.ctl("list_channels", "vhost", "confirm").splitlines()]
    return [row[-1] for row in rows if len(row) == 2 and row[0] == vhost]


@pytest.mark.parametrize("confirm_publish", [True, False])
def test_confirm_publish_turns_publisher_confirms_on_or_off(
    rabbit_node: RabbitNode, backend_url: str, confirm_publish: bool
) -> None:
    vhost = f"confirms-{str(confirm_publish).lower()}"
    rabbit_node.ctl("add_vhost", vhost)
    rabbit_node.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    url = vhost_url(rabbit_node, vhost)
    client = Celery("confirms", broker=url, backend=backend_url)
    client.conf.broker_transport_options = {"confirm_publish": confirm_publish}
    try:
        results = [client.send_task("amqp.add", (i, i)) for i in range(20)]
        # the client's publishing channel is the only one on its vhost yet
        assert _confirm_modes(rabbit_node, vhost) == [str(confirm_publish).lower()]
        worker = start_celeriac_worker("amqp_tasks", url, backend_url=backend_url)
        try:
            assert [r.get(timeout=30) for r in results] == [2 * i for i in range(20)]
        finally:
            worker.stop()
    finally:
        client.close()
        rabbit_node.ctl("delete_vhost", vhost)


def test_a_bad_confirm_publish_value_is_a_clear_error(amqp_url: str) -> None:
    client = Celery("bad_confirms", broker=amqp_url)
    client.conf.broker_transport_options = {"confirm_publish": "sometimes"}
    try:
        with pytest.raises(ConfigurationError, match=r"confirm_publish.*True or False"):
            client.send_task("amqp.add", (1, 2))
    finally:
        client.close()
