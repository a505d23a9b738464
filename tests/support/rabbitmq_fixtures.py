"""pytest fixtures for a RabbitMQ node: a test module that needs one says
``pytest_plugins = ["tests.support.rabbitmq_fixtures"]``, so one node serves the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.rabbitmq import RabbitNode, start_rabbitmq


@pytest.fixture(scope="session")
def rabbit_node() -> Iterator[RabbitNode]:
    node = start_rabbitmq()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def amqp_url(rabbit_node: RabbitNode) -> str:
    """The node's URL, with the default queue of earlier tests deleted."""
    rabbit_node.reset()
    return rabbit_node.url
