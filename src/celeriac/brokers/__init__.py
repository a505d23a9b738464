"""Brokers, chosen by URL scheme."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigurationError
from ..urls import safe_url
from .base import Broker, DeadLetter, Delivery, priority_key

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["Broker", "DeadLetter", "Delivery", "make_broker", "priority_key"]


def make_broker(url: str, settings: Settings, client_name: str = "celeriac") -> Broker:
    """Open the broker that *url*'s scheme names."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("redis", "rediss", "unix", "sentinel"):
        from .redis import RedisBroker

        return RedisBroker(url, settings, client_name=client_name)
    if scheme in ("amqp", "amqps", "pyamqp"):
        from .amqp import AmqpBroker

        return AmqpBroker(url, settings, client_name=client_name)
    if scheme == "memory":
        from .memory import MemoryBroker

        return MemoryBroker(url, settings)
    if scheme == "sqlite":
        from .sqlite import SqliteBroker

        return SqliteBroker(url, settings, client_name=client_name)
    raise ConfigurationError(
        f"unknown broker URL scheme in {safe_url(url)!r}; "
        f"use redis://host:port/db, amqp://user:password@host:5672/vhost, sqlite:///path, "
        f"sentinel://host:26379/0;sentinel://host2:26379/0 or memory://"
    )
