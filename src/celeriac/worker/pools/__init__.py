"""Pools decide where task bodies run. ``--pool`` picks one from POOLS by name."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ...errors import ConfigurationError

if TYPE_CHECKING:
    from .base import Pool

POOLS = {
    "prefork": "celeriac.worker.pools.prefork:PreforkPool",
    "solo": "celeriac.worker.pools.solo:SoloPool",
    "threads": "celeriac.worker.pools.threads:ThreadPool",
    "gevent": "celeriac.worker.pools.gevent:GeventPool",
    "eventlet": "celeriac.worker.pools.eventlet:EventletPool",
    "asyncio": "celeriac.worker.pools.asyncio:AsyncioPool",
}
ALIASES = {"processes": "prefork", "thread": "threads", "custom": "solo"}


def pool_class(name: str) -> type[Pool]:
    name = ALIASES.get(name, name)
    try:
        target = POOLS[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown pool {name!r}; choose one of {', '.join(POOLS)}"
        ) from None
    module_name, _, attr = target.partition(":")
    cls: type[Pool] = getattr(importlib.import_module(module_name), attr)
    return cls
