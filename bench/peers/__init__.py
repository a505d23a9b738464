"""The libraries under test, by name. Each adapter module defines ``PEER``."""

from __future__ import annotations

import importlib

from .base import Peer

ORDER = ("celeriac", "celery", "dramatiq", "rq", "huey", "taskiq", "arq")


def load(name: str) -> Peer:
    module = importlib.import_module(f"bench.peers.{name}")
    peer: Peer = module.PEER
    return peer
