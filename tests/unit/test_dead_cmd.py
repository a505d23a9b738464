"""``celeriac dead list|show|requeue|purge`` on the ``memory://`` broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner, Result

from celeriac.brokers.memory import MemoryBroker
from celeriac.cli import main as cli_main
from celeriac.protocol import SendOptions, build_envelope

QUEUE = "jobs"


@pytest.fixture(scope="module")
def cli() -> click.Group:
    cli_main._register_commands()
    return cli_main.cli


@pytest.fixture
def url() -> str:
    return f"memory://dead-cmd-{uuid.uuid4().hex}"


@pytest.fixture
def broker(url: str) -> Iterator[MemoryBroker]:
    yield MemoryBroker(url)


def bury(broker: MemoryBroker, task_id: str, reason: str, args: list[object] | None = None) -> None:
    raw = build_envelope("unit.sum", task_id, args or [2, 3], {}, SendOptions(queue=QUEUE))
    broker.publish(QUEUE, raw)
    (delivery,) = broker.fetch([QUEUE], 1, 0.0)
    broker.dead_letter(delivery, reason)


def run(cli: click.Group, url: str, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["-b", url, "dead", *args], input=stdin, prog_name="celeriac")


def test_dead_help_lists_its_sub_commands(cli: click.Group, url: str) -> None:
    output = run(cli, url, "--help").output
    assert all(f"  {name}" in output for name in ("list", "show", "requeue", "purge"))


def test_list_shows_the_count(cli: click.Group, url: str, broker: MemoryBroker) -> None:
    bury(broker, "id-1", "first")
    bury(broker, "id-2", "second")
    result = run(cli, url, "list", "-Q", QUEUE)
    assert result.exit_code == 0, result.output
    assert f"{QUEUE}: 2 dead letter(s)" in result.output


def test_list_shows_task_name_id_and_reason_per_message(
    cli: click.Group, url: str, broker: MemoryBroker
) -> None:
    bury(broker, "id-1", "rejected by the task: 'nope'")
    (line,) = [ln for ln in run(cli, url, "list", "-Q", QUEUE).output.splitlines() if "id-1" in ln]
    assert "unit.sum[id-1]" in line
    assert "rejected by the task: 'nope'" in line


def test_list_says_how_many_more_there_are_past_the_limit(
    cli: click.Group, url: str, broker: MemoryBroker
) -> None:
    for n in range(3):
        bury(broker, f"id-{n}", "why")
    assert "... and 2 older" in run(cli, url, "list", "-Q", QUEUE, "--limit", "1").output


def test_list_of_an_empty_queue_says_zero(cli: click.Group, url: str) -> None:
    result = run(cli, url, "list", "-Q", QUEUE)
    assert (result.exit_code, result.output.strip()) == (0, f"{QUEUE}: 0 dead letter(s)")


def test_list_defaults_to_the_apps_default_queue(
    cli: click.Group, url: str, broker: MemoryBroker
) -> None:
    raw = build_envelope("unit.sum", "id-c", [], {}, SendOptions(queue="celery"))
    broker.publish("celery", raw)
    (delivery,) = broker.fetch(["celery"], 1, 0.0)
    broker.dead_letter(delivery, "why")
    assert "celery: 1 dead letter(s)" in run(cli, url, "list").output


def test_show_prints_the_reason_and_the_decoded_arguments(
    cli: click.Group, url: str, broker: MemoryBroker
) -> None:
    bury(broker, "id-1", "the reason", args=["needle-arg", 41])
    result = run(cli, url, "show", "-Q", QUEUE, "id-1")
    assert result.exit_code == 0, result.output
    assert "reason:  the reason" in result.output
    assert '"needle-arg"' in result.output
    assert '"delivery_tag"' in result.output  # the whole envelope


def test_show_by_index_prints_a_message_that_has_no_task_id(
    cli: click.Group, url: str, broker: MemoryBroker
) -> None:
    broker.publish(QUEUE, b"garbage that is not json")
    broker.fetch([QUEUE], 1, 0.0)
    result = run(cli, url, "show", "-Q", QUEUE, "--index", "1")
    assert result.exit_code == 0, result.output
    assert "garbage that is not json" in result.output


def test_show_of_an_unknown_id_fails_and_says_how_to_list(
    cli: click.Group, url: str, broker: MemoryBroker
) -> None:
    bury(broker, "id-1", "why")
    result = run(cli, url, "show", "-Q", QUEUE, "nope")
    assert result.exit_code == 1
    assert f"celeriac dead list -Q {QUEUE}" in result.output


def test_show_needs_an_id_or_an_index(cli: click.Group, url: str) -> None:
    result = run(cli, url, "show", "-Q", QUEUE)
    assert result.exit_code == 2
    assert "TASK_ID or --index" in result.output


def test_requeue_moves_every_dead_letter_back(
    cli: click.Group, url: str, broker: MemoryBroker
) -> None:
    bury(broker, "id-1", "why")
    bury(broker, "id-2", "why")
    result = run(cli, url, "requeue", "-Q", QUEUE)
    assert (result.exit_code, result.output.strip()) == (0, f"requeued 2 message(s) to {QUEUE}")
    assert (broker.queue_length(QUEUE), broker.dead_letter_count(QUEUE)) == (2, 0)


def test_requeue_with_an_id_moves_only_that_task(
    cli: click.Group, url: str, broker: MemoryBroker
) -> None:
    bury(broker, "id-1", "why")
    bury(broker, "id-2", "why")
    assert run(cli, url, "requeue", "-Q", QUEUE, "--id", "id-2").exit_code == 0
    assert [d.task_id for d in broker.dead_letters(QUEUE)] == ["id-1"]


def test_requeue_with_an_unknown_id_fails(cli: click.Group, url: str, broker: MemoryBroker) -> None:
    bury(broker, "id-1", "why")
    result = run(cli, url, "requeue", "-Q", QUEUE, "--id", "nope")
    assert result.exit_code == 1
    assert "no dead letter with task id nope" in result.output


def test_purge_asks_and_keeps_them_when_told_no(
    cli: click.Group, url: str, broker: MemoryBroker
) -> None:
    bury(broker, "id-1", "why")
    result = run(cli, url, "purge", "-Q", QUEUE, stdin="n\n")
    assert result.exit_code == 1  # click's Abort
    assert "1 dead letter(s) in jobs will be deleted" in result.output
    assert broker.dead_letter_count(QUEUE) == 1


def test_purge_deletes_them_when_told_yes(cli: click.Group, url: str, broker: MemoryBroker) -> None:
    bury(broker, "id-1", "why")
    result = run(cli, url, "purge", "-Q", QUEUE, stdin="y\n")
    assert result.exit_code == 0, result.output
    assert broker.dead_letter_count(QUEUE) == 0


def test_purge_with_force_does_not_ask(cli: click.Group, url: str, broker: MemoryBroker) -> None:
    bury(broker, "id-1", "why")
    bury(broker, "id-2", "why")
    result = run(cli, url, "purge", "-Q", QUEUE, "-f")
    assert (result.exit_code, result.output.strip()) == (0, f"purged 2 dead letter(s) from {QUEUE}")
