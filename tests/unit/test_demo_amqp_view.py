"""The demo's AMQP view: RabbitMQ's addresses read as psutil shows them, and one process's
connections drawn on one line."""

from __future__ import annotations

from celeriac.demo import observe
from celeriac.demo.render import compact_connections


def test_rabbitmqctl_addresses_read_as_dotted_and_colon_text() -> None:
    assert observe._erlang_ip([127, 0, 0, 1]) == "127.0.0.1"
    assert observe._erlang_ip([0, 0, 0, 0, 0, 0, 0, 1]) == "::1"
    assert observe._erlang_ip("10.0.0.5") == "10.0.0.5"


def test_amqp_sockets_are_drawn_with_their_local_ports_and_rabbitmq_names() -> None:
    named = [
        "127.0.0.1:41000 → 127.0.0.1:5672 = celeriac.child0.7 consumer [1 channel] (amqp)",
        "127.0.0.1:41002 → 127.0.0.1:5672 = celeriac.child0.7:results publisher [1 channel] (amqp)",
    ]
    assert compact_connections(named) == (
        "2 AMQP connections → 127.0.0.1:5672: :41000 celeriac.child0.7 consumer [1 channel], "
        ":41002 celeriac.child0.7:results publisher [1 channel]"
    )
    assert compact_connections(["127.0.0.1:41000 → 127.0.0.1:5672 (amqp)"]) == (
        "1 AMQP connection → 127.0.0.1:5672: :41000"
    )


def test_a_shared_amqp_socket_keeps_its_own_line() -> None:
    text = compact_connections(
        [
            "127.0.0.1:41000 → 127.0.0.1:5672 (amqp)",
            "127.0.0.1:41004 → 127.0.0.1:5672 (amqp, shared with [99])",
        ]
    )
    assert text == (
        "1 AMQP connection → 127.0.0.1:5672: :41000, "
        "127.0.0.1:41004 → 127.0.0.1:5672 (amqp, shared with [99])"
    )


def test_an_amqp_url_that_cannot_be_read_is_reported_not_raised() -> None:
    conns, source = observe.connections("amqp://host:notaport//", [])
    assert conns is None
    assert "could not read the AMQP URL" in source
