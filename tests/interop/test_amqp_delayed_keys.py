"""celeriac's native delayed delivery names, arguments and routing keys are kombu's (Celery
5.5+), so either side's messages find the other's topology."""

from __future__ import annotations

import datetime

import pytest
from kombu.transport import native_delayed_delivery as kombu_delayed

from celeriac.brokers import amqp_delayed


@pytest.mark.parametrize("delay_s", [1, 2, 3, 59, 3600, 86_400 * 30, 2**28 - 1])
def test_routing_key_is_kombus(delay_s: int) -> None:
    assert amqp_delayed.routing_key(delay_s, "celery") == kombu_delayed.calculate_routing_key(
        delay_s, "celery"
    )


def test_level_names_and_exchanges_are_kombus() -> None:
    assert amqp_delayed.LEVELS - 1 == kombu_delayed.MAX_LEVEL
    assert amqp_delayed.DELIVERY_EXCHANGE == kombu_delayed.CELERY_DELAYED_DELIVERY_EXCHANGE
    for level in (0, 1, 27):
        assert amqp_delayed.level_name(level) == kombu_delayed.level_name(level)


@pytest.mark.parametrize("delay_s", [0, -5, 2**28])
def test_a_delay_out_of_reach_is_refused(delay_s: int) -> None:
    with pytest.raises(ValueError, match="native delay is 1 to"):
        amqp_delayed.routing_key(delay_s, "celery")


def test_whole_seconds_until_an_eta() -> None:
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    later = (now + datetime.timedelta(seconds=2.7)).isoformat()
    assert amqp_delayed.whole_seconds_until(later, now) == 2
    naive = (now + datetime.timedelta(seconds=5)).replace(tzinfo=None).isoformat()
    assert amqp_delayed.whole_seconds_until(naive, now) == 5  # a naive time is UTC
    soon = (now + datetime.timedelta(seconds=0.5)).isoformat()
    assert amqp_delayed.whole_seconds_until(soon, now) is None  # the worker holds it
    assert amqp_delayed.whole_seconds_until("not a time", now) is None
    assert amqp_delayed.whole_seconds_until(None, now) is None
