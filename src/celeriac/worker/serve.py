"""Run one consumer in this process until shutdown, then put back what was not started."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..brokers.base import Delivery
from . import log_lines
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
    log_lines.install()  # also for pools run without Worker.start: failures are logged
    return ExecContext(
        app=runtime.app,
        nodename=runtime.nodename,
        place_base=worker_place(runtime.nodename, pool_name, child_index),
        place_extras=slots.place_extras,
    )


@contextmanager
def vouched_for(
    runtime: WorkerRuntime,
    enabled: bool = True,
    started: Callable[[], list[str]] | None = None,
) -> Iterator[None]:
    """Beat for this process's consumer while the block runs, then retire its owner id.
    *started*: the receipts the consumer has begun (what else it holds is only waiting).

    Prefork children skip this: their manager beats for them."""
    liveness = None
    if enabled:
        broker = runtime.app.broker
        began = None if started is None else (lambda: {broker.owner: started()})
        liveness = Liveness(runtime.app, lambda: [broker.owner], began)
        liveness.tick()
        liveness.start_thread()
    try:
        yield
    finally:
        if liveness is not None:
            liveness.stop()
            _retire(runtime)


def _can_defer_stores(ctx: ExecContext) -> bool:
    try:
        return hasattr(ctx.app.backend, "store_deferred")
    except Exception:  # a backend that cannot even be built fails at the first store instead
        return False


def settle(consumer: Consumer) -> None:
    """At shutdown: send the acks still pending, then put back what was never finished."""
    try:
        consumer.flush_acks()
    except Exception as exc:
        logger.warning("could not send pending acks at shutdown (they will run again): %s", exc)
    consumer.requeue_held()


def serve_in_process(
    runtime: WorkerRuntime,
    slots: Slots,
    pool_name: str,
    child_index: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    ctx: ExecContext | None = None,
    handler: Callable[[ExecContext, Delivery], None] = handle,
    **consumer_options: Any,
) -> int:
    """Consume until stopped; warm: let running jobs end; cold: stop now. Returns 0."""
    ctx = ctx or make_context(runtime, slots, pool_name, child_index)
    if getattr(slots, "inline", False):
        ctx.defer_stores = _can_defer_stores(ctx)  # one task at a time here: see ExecContext
    consumer_options.setdefault(
        "prefetch_target", lambda: slots.capacity * max(1, runtime.prefetch_multiplier)
    )
    if runtime.prefetch_multiplier > 1:  # 1 is Celery's "fair" setting: hold exactly that
        consumer_options.setdefault("prefetch_window_s", runtime.prefetch_window_s)
    consumer = Consumer(
        ctx,
        runtime.consumed.names() if runtime.consumed is not None else runtime.queues,
        slots,
        runtime.stop,
        handler=handler,
        should_stop=should_stop,
        queue_source=runtime.consumed,
        **consumer_options,
    )
    with (
        vouched_for(runtime, enabled=child_index is None, started=consumer.started_receipts),
        _hand_back_on_warm_stop(runtime, consumer, inline=bool(getattr(slots, "inline", False))),
    ):
        try:
            consumer.run()
            if runtime.stop.warm.is_set() and not runtime.stop.cold.is_set():
                consumer.hand_back_unstarted()  # before waiting for the running ones
            if not runtime.stop.cold.is_set() and not slots.join(runtime.warm_grace_s):
                logger.warning("warm shutdown: tasks still running after the grace period")
        except ColdShutdown:
            logger.warning("cold shutdown: stopping running tasks now")
        except KeyboardInterrupt:
            logger.warning("interrupted: stopping running tasks now")
        finally:
            settle(consumer)
    return 0


@contextmanager
def _hand_back_on_warm_stop(
    runtime: WorkerRuntime, consumer: Consumer, inline: bool
) -> Iterator[None]:
    """Where tasks run in the consumer's own thread (solo, a prefork child), that thread is
    busy when a warm stop comes: a helper thread puts the unstarted messages back at once,
    not after the running task."""
    if not inline:
        yield
        return
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if runtime.stop.warm.wait(0.25):
                if not runtime.stop.cold.is_set():
                    consumer.hand_back_unstarted()
                return

    helper = threading.Thread(target=watch, name="celeriac-warm-hand-back", daemon=True)
    helper.start()
    try:
        yield
    finally:
        done.set()


def _retire(runtime: WorkerRuntime) -> None:
    try:
        runtime.app.broker.retire()
    except Exception as exc:  # shutting down with the broker gone: the sweep cleans up later
        logger.warning("could not retire this consumer's owner id: %s", exc)
