"""Dead letters of Celery's task protocol 1 (the task name and id live in the body, not in
headers): ``celeriac dead list/show/requeue --id`` find them, on Redis (where the requeue
script reads headers only and Python reads the body) and on SQLite. The message is a real
one, sent by the celery package with ``task_protocol = 1``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import celery  # type: ignore[import-untyped]
import click
import pytest
from click.testing import CliRunner, Result

from celeriac import Celery
from celeriac.brokers.base import Broker
from celeriac.cli import main as cli_main
from celeriac.protocol import SendOptions, build_envelope
from tests.support.redis_server import RedisServer

QUEUE = "p1_jobs"
PARKED = "p1_parked"


@pytest.fixture(scope="module")
def cli() -> click.Group:
    cli_main._register_commands()
    return cli_main.cli


@pytest.fixture(scope="module")
def protocol1_message(redis_server: RedisServer) -> tuple[bytes, str]:
    """A protocol 1 message exactly as Celery sends it, and its task id."""
    url = redis_server.url(14)
    redis_server.client(14).flushdb()
    app = celery.Celery("p1_client", broker=url, set_as_current=False)
    app.conf.task_protocol = 1
    try:
        task_id = app.send_task("p1.add", (20, 22), queue=PARKED).id
    finally:
        app.close()
    raw = redis_server.client(14).rpop(PARKED)
    assert isinstance(raw, bytes)
    assert b'"task"' not in raw.split(b'"body"')[0]  # no task header: protocol 1
    return raw, str(task_id)


@pytest.fixture(params=["redis", "sqlite"])
def broker_url(request: pytest.FixtureRequest, redis_url: str, tmp_path: Path) -> str:
    return redis_url if request.param == "redis" else f"sqlite:///{tmp_path / 'broker.db'}"


@pytest.fixture
def broker(broker_url: str) -> Iterator[Broker]:
    app = Celery("dead-p1", broker=broker_url)
    yield app.broker
    app.close()


def bury(broker: Broker, raw: bytes, reason: str) -> None:
    broker.publish(QUEUE, raw)
    (delivery,) = broker.fetch([QUEUE], 1, 1.0)
    broker.dead_letter(delivery, reason)


def run(cli: click.Group, url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["-b", url, "dead", *args], prog_name="celeriac")


def test_protocol1_dead_letters_are_listed_shown_and_requeued_by_id(
    cli: click.Group, broker_url: str, broker: Broker, protocol1_message: tuple[bytes, str]
) -> None:
    raw, task_id = protocol1_message
    other = build_envelope("p2.add", "p2-id", [1, 2], {}, SendOptions(queue=QUEUE))
    bury(broker, raw, "no such task: p1.add")
    bury(broker, other, "no such task: p2.add")

    listed = run(cli, broker_url, "list", "-Q", QUEUE)
    assert listed.exit_code == 0, listed.output
    assert f"p1.add[{task_id}]  no such task: p1.add" in listed.output
    assert "p2.add[p2-id]" in listed.output

    shown = run(cli, broker_url, "show", "-Q", QUEUE, task_id)
    assert shown.exit_code == 0, shown.output
    assert f"task:    p1.add[{task_id}]" in shown.output

    requeued = run(cli, broker_url, "requeue", "-Q", QUEUE, "--id", task_id)
    assert requeued.exit_code == 0, requeued.output
    assert broker.queue_length(QUEUE) == 1
    assert [d.task_id for d in broker.dead_letters(QUEUE)] == ["p2-id"]
    (back,) = broker.fetch([QUEUE], 1, 1.0)
    assert back.raw == raw  # put back exactly as Celery sent it

    again = run(cli, broker_url, "requeue", "-Q", QUEUE, "--id", task_id)
    assert again.exit_code != 0  # moved once only
    assert f"no dead letter with task id {task_id}" in again.output


def test_a_dead_letter_with_an_unreadable_body_has_no_id(broker: Broker) -> None:
    raw = b'{"body": "not base64!", "content-type": "application/json", "headers": {}, '
    raw += b'"properties": {"body_encoding": "base64", "delivery_tag": "t"}}'
    bury(broker, raw, "bad body")
    (letter,) = broker.dead_letters(QUEUE)
    assert (letter.task_id, letter.task_name) == (None, None)
    assert broker.requeue_dead(QUEUE, "anything") == 0
    assert broker.dead_letter_count(QUEUE) == 1  # kept
