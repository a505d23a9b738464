"""What recovery did, for the metrics view: messages restored, dead-lettered, tasks lost.

The code that recovers messages (``worker.liveness``, the consumer at shutdown) reports here;
with no view listening (no ``--metrics-port``) a report costs one truth test. No
prometheus_client import: this module sits on the worker's recovery paths.
"""

from __future__ import annotations

from collections.abc import Callable

RecoveredHook = Callable[[int, int], None]
LostHook = Callable[[str], None]

recovered_hooks: tuple[RecoveredHook, ...] = ()
lost_hooks: tuple[LostHook, ...] = ()


def recovered(restored: int, dead_lettered: int) -> None:
    """*restored* messages went back to their queues, *dead_lettered* to the dead letters."""
    if recovered_hooks and (restored or dead_lettered):
        for hook in recovered_hooks:
            hook(restored, dead_lettered)


def lost(task_name: str) -> None:
    """A task's process died while running it (prefork: WorkerLostError or a time limit)."""
    for hook in lost_hooks:
        hook(task_name)


def listen(on_recovered: RecoveredHook, on_lost: LostHook) -> None:
    global recovered_hooks, lost_hooks
    if on_recovered not in recovered_hooks:
        recovered_hooks = (*recovered_hooks, on_recovered)
    if on_lost not in lost_hooks:
        lost_hooks = (*lost_hooks, on_lost)


def stop_listening() -> None:
    global recovered_hooks, lost_hooks
    recovered_hooks = ()
    lost_hooks = ()
