"""Run one consumer in this process until shutdown, then put back what was not started."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..brokers.base import Delivery
from .consumer import Consumer
from .execute import ExecContext, handle
from .liveness import Liveness
from .place import worker_place
from .pools.base import Slots
from .runtime import ColdShutdown, WorkerRuntime

logger = logging.getLogger(__name__)


def make_context(
    runtime: WorkerRuntime, slots: Slots, pool_name: str, child_index: int | None = None
) -> ExecContext:
    return ExecContext(
        app=runtime.app,
        nodename=runtime.nodename,
        place_base=worker_place(runtime.nodename, pool_name, child_index),
        place_extras=slots.place_extras,
    )


def warn_unenforced_time_limits(runtime: WorkerRuntime, pool_name: str) -> None:
    """Say so when time limits are set: a pool whose tasks share this process cannot stop
    one from outside, so the limits would otherwise be ignored without a word."""
    if runtime.time_limit_s or runtime.soft_time_limit_s:
        logger.warning(
            "the %s pool does not enforce --time-limit or --soft-time-limit; they are ignored. "
            "Use -P prefork, whose children can be interrupted and replaced, to enforce them",
            pool_name,
        )


def serve_in_process(
    runtime: WorkerRuntime,
    slots: Slots,
    pool_name: str,
    child_index: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    ctx: ExecContext | None = None,
    handler: Callable[[ExecContext, Delivery], None] = handle,
) -> int:
    """Consume until stopped; warm: let running jobs end; cold: stop now. Returns 0."""
    ctx = ctx or make_context(runtime, slots, pool_name, child_index)
    consumer = Consumer(
        ctx, runtime.queues, slots, runtime.stop, handler=handler, should_stop=should_stop
    )
    broker = runtime.app.broker
    liveness = None
    if child_index is None:  # prefork children are vouched for by their manager
        liveness = Liveness(runtime.app, lambda: [broker.owner])
        liveness.tick()
        liveness.start_thread()
    try:
        consumer.run()
        if not runtime.stop.cold.is_set() and not slots.join(runtime.warm_grace_s):
            logger.warning("warm shutdown: tasks still running after the grace period")
    except ColdShutdown:
        logger.warning("cold shutdown: stopping running tasks now")
    except KeyboardInterrupt:
        logger.warning("interrupted: stopping running tasks now")
    finally:
        consumer.requeue_held()
        if liveness is not None:
            liveness.stop()
        _retire(runtime)
    return 0


def _retire(runtime: WorkerRuntime) -> None:
    try:
        runtime.app.broker.retire()
    except Exception as exc:  # shutting down with the broker gone: the sweep cleans up later
        logger.warning("could not retire this consumer's owner id: %s", exc)
