"""The asyncio pool: ``async def`` tasks run as coroutines on one event loop, N at most.

The loop runs in the worker's main thread (uvloop's when it is installed). The broker and
backend clients are blocking redis-py, so nothing that calls them runs on the loop: the shared
consumer loop runs in a thread of its own and hands each message over with
``call_soon_threadsafe``; accept, begin and finish run in a few I/O threads; a plain ``def``
task runs in a task thread. The loop only ever runs coroutines.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from ...brokers.base import Delivery
from ..consumer import Consumer
from ..execute import ExecContext, accept, begin, finish, internal_error, invoke, invoke_async
from ..place import Place, asyncio_task_name
from ..serve import make_context, settle, vouched_for
from ..timelimits import AsyncLimits, ThreadInterrupter, Watchdog
from .threads import DaemonThreadExecutor

if TYPE_CHECKING:
    from ..runtime import StopFlags, WorkerRuntime

logger = logging.getLogger(__name__)

T = TypeVar("T")

IO_THREADS = 4  # broker and backend round trips around each task; they are short
CANCEL_WAIT_S = 1.0  # how long a cold stop waits for cancelled coroutines to unwind


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed (faster I/O and timers), else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


class LoopSlots:
    """Counts messages handed to the loop and not yet done.

    ``free()`` is read in the consumer thread and slots are released on the loop, hence the
    lock. ``submit`` only hands the message over, so the consumer never waits on a task.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._changed = threading.Condition()
        self._in_flight = 0

    def free(self) -> int:
        with self._changed:
            return self.capacity - self._in_flight

    def submit(self, job: Callable[[], None]) -> None:
        with self._changed:
            if self._in_flight >= self.capacity:
                raise RuntimeError(
                    f"all {self.capacity} slots are in flight; submit only when free() > 0"
                )
            self._in_flight += 1
        try:
            job()  # the consumer's handler: LoopRunner.hand_over
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        with self._changed:
            self._in_flight -= 1
            self._changed.notify_all()

    def wait_for_free(self, timeout_s: float) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._in_flight < self.capacity, timeout_s)

    def join(self, timeout_s: float | None) -> bool:
        """Wait from a thread other than the loop's (the loop itself uses LoopRunner.drain)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._in_flight == 0, timeout_s)

    def place_extras(self) -> Place:
        return {"asyncio_task": asyncio_task_name()}


class LoopRunner:
    """Runs each handed-over message as one asyncio task: accept, begin, invoke, finish.

    A message stays in ``unfinished`` from hand-over until it was handled; whatever is left
    there at shutdown (not begun before a stop, or cut short by a cold stop) goes back to the
    queue.
    """

    def __init__(
        self,
        ctx: ExecContext,
        slots: LoopSlots,
        stop: StopFlags,
        loop: asyncio.AbstractEventLoop,
        io_threads: DaemonThreadExecutor,
        task_threads: DaemonThreadExecutor,
    ) -> None:
        self.ctx = ctx
        self.slots = slots
        self.stop = stop
        self.loop = loop
        self.io_threads = io_threads
        self.task_threads = task_threads
        self.tasks: set[asyncio.Task[None]] = set()
        self.limits: AsyncLimits | None = None  # time limits and terminate, see timelimits
        self.thread_limits: Watchdog | None = None  # the same for plain def tasks
        self._unfinished: dict[str, Delivery] = {}
        self._lock = threading.Lock()

    def hand_over(self, ctx: ExecContext, delivery: Delivery) -> None:
        """The consumer's handler, called in the consumer thread: schedule the message."""
        if delivery.receipt:
            with self._lock:
                self._unfinished[delivery.receipt] = delivery
        self.loop.call_soon_threadsafe(self._start, delivery)

    def _start(self, delivery: Delivery) -> None:
        task = self.loop.create_task(self._handle(delivery), name=f"message:{delivery.receipt}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _handle(self, delivery: Delivery) -> None:
        try:
            if await self._run(delivery):
                self._forget(delivery)
        except Exception as exc:  # one message must never take the pool down
            internal_error(self.ctx, delivery, None, exc)
            self._forget(delivery)
        finally:
            self.slots.release()

    async def _run(self, delivery: Delivery) -> bool:
        """Handle one message; False when a stop came before it began (it goes back)."""
        ctx = self.ctx
        if self.stop.stopping:
            return False
        job = await self._off_loop(accept, ctx, delivery)
        if job is None:
            return True
        current = asyncio.current_task()
        if current is not None:
            current.set_name(f"{job.message.task}[{job.message.id}]")
        if self.stop.stopping:
            return False
        await self._off_loop(begin, ctx, job)
        if job.task.is_async and self.limits is not None:
            outcome = await self.limits.invoke(invoke_async(ctx, job), job)
            if await self._off_loop(self.limits.was_terminated, ctx, job):
                return True
        elif job.task.is_async:
            outcome = await invoke_async(ctx, job)
        elif self.thread_limits is not None:  # a plain function: in a thread, limited
            limits = self.thread_limits
            outcome = await self.loop.run_in_executor(self.task_threads, limits.invoke, ctx, job)
            if await self._off_loop(limits.was_terminated, ctx, job):
                return True
        else:  # a plain function would block every coroutine: run it in a thread
            outcome = await self.loop.run_in_executor(self.task_threads, invoke, ctx, job)
        await self._off_loop(finish, ctx, job, outcome)
        return True

    async def _off_loop(self, fn: Callable[..., T], *args: object) -> T:
        return await self.loop.run_in_executor(self.io_threads, fn, *args)

    def _forget(self, delivery: Delivery) -> None:
        with self._lock:
            self._unfinished.pop(delivery.receipt, None)

    async def drain(self, timeout_s: float | None) -> bool:
        """Let running coroutines end; False if some still ran after *timeout_s*."""
        deadline = None if timeout_s is None else self.loop.time() + timeout_s
        while self.tasks:
            remaining = None if deadline is None else deadline - self.loop.time()
            if remaining is not None and remaining <= 0:
                return False
            await asyncio.wait(set(self.tasks), timeout=remaining)
        return True

    async def cancel_all(self) -> None:
        """Stop running coroutines now (cold shutdown); threads already running go on."""
        tasks = set(self.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CANCEL_WAIT_S)

    def requeue_unfinished(self) -> int:
        """Put back every message taken but not handled (shutdown)."""
        with self._lock:
            receipts = list(self._unfinished)
            self._unfinished.clear()
        if not receipts:
            return 0
        try:
            restored = self.ctx.app.broker.requeue(receipts)
        except Exception:
            logger.exception("could not requeue %d message(s) at shutdown", len(receipts))
            return 0
        if restored:
            logger.info("restored %d unacknowledged message(s)", restored)
        return restored


class AsyncioPool:
    name = "asyncio"

    def __init__(self, runtime: WorkerRuntime) -> None:
        self.runtime = runtime
        self.limits: AsyncLimits | None = None
        # plain def tasks run in threads: limited as in the threads pool, but never
        # abandoned (a recycle would cut every coroutine on the loop short)
        interrupter = ThreadInterrupter()
        interrupter.can_abandon = False
        self.thread_limits = Watchdog(runtime, interrupter)

    def terminate_task(self, task_id: str, signum: int) -> bool:
        if self.limits is not None and self.limits.terminate(task_id, signum):
            return True
        return self.thread_limits.terminate(task_id, signum)

    def running_ids(self) -> set[str]:
        running = set(self.limits.running) if self.limits is not None else set()
        return running | self.thread_limits.running_ids()

    def run(self) -> int:
        loop = new_event_loop()
        asyncio.set_event_loop(loop)
        logger.info(
            "asyncio pool: %s loop, at most %d tasks in flight",
            type(loop).__module__.split(".")[0],
            self.runtime.concurrency,
        )
        try:
            return loop.run_until_complete(self._serve(loop))
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> int:
        runtime = self.runtime
        slots = LoopSlots(runtime.concurrency)
        ctx = make_context(runtime, slots, self.name)
        ctx.app.backend  # noqa: B018 - open it here, not racing from several I/O threads
        io_threads = DaemonThreadExecutor(IO_THREADS, "celeriac-io")
        task_threads = DaemonThreadExecutor(runtime.concurrency, "celeriac-sync-task")
        consumer_thread = DaemonThreadExecutor(1, "celeriac-consumer")
        runner = LoopRunner(ctx, slots, runtime.stop, loop, io_threads, task_threads)
        runner.limits = self.limits = AsyncLimits(runtime, loop)
        runner.thread_limits = self.thread_limits
        consumer = Consumer(
            ctx,
            runtime.queues,
            slots,
            runtime.stop,
            handler=runner.hand_over,
            queue_source=runtime.consumed,
        )
        with vouched_for(runtime):
            await self._consume(loop, consumer, consumer_thread, runner, io_threads, task_threads)
        return 0

    async def _consume(
        self,
        loop: asyncio.AbstractEventLoop,
        consumer: Consumer,
        consumer_thread: DaemonThreadExecutor,
        runner: LoopRunner,
        io_threads: DaemonThreadExecutor,
        task_threads: DaemonThreadExecutor,
    ) -> None:
        runtime = self.runtime
        try:
            await loop.run_in_executor(consumer_thread, consumer.run)
            if runtime.stop.cold.is_set():
                logger.warning("cold shutdown: cancelling running tasks now")
                await runner.cancel_all()
            elif not await runner.drain(runtime.warm_grace_s):
                logger.warning("warm shutdown: tasks still running after the grace period")
        finally:
            await runner.cancel_all()  # none are left unless the stop was cold or cut short
            settle(consumer)
            runner.requeue_unfinished()
            for executor in (consumer_thread, io_threads, task_threads):
                executor.shutdown(wait=False)
