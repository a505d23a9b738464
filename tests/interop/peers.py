"""What both sides of the interop tests agree on."""

from __future__ import annotations

# the routes tests/support/core_tasks.py and celery_core_tasks.py use
ROUTES = {"core.routed.*": {"queue": "routed"}}

# `ready.` is logged at INFO; mingle, gossip and heartbeats only slow the start
CELERY_WORKER_FLAGS = ("-l", "info", "--without-mingle", "--without-gossip", "--without-heartbeat")
