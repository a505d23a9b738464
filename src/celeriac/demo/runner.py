"""Drive the demo: one real worker per pool, the seed's tasks, then measure and check.

Pools run one after another, never side by side: on two cores, a neighbour pool would
steal the CPU the CPU batch is timing. Every worker is stopped in a ``finally`` before the
next starts, so an interrupt at any point leaves nothing running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .. import __version__
from ..app import Celeriac
from ..errors import CeleriacError
from ..errors import TimeoutError as ResultTimeout
from ..result import AsyncResult
from ..urls import safe_url
from . import plan
from .checks import check, contradicts, failed_tasks
from .localhttp import LoopbackServer
from .measure import measure
from .model import DemoReport, Observation, PoolReport, TaskRecord
from .observe import connections, process_tree
from .progress import Reporter
from .seed_app import ROUTES
from .workerproc import DemoWorker, adopting_orphans, sigint_deferred, sweep

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 30.0
BATCH_TIMEOUT_S = 20.0
# how often a wait for a result stops to check that the worker still lives
WAIT_SLICE_S = 5.0
ENV_KEYS = ("CELERIAC_BROKER_URL", "CELERIAC_RESULT_BACKEND")
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")


@dataclass
class DemoOptions:
    pools: Sequence[str]
    broker_url: str | None = None
    concurrency: int | None = None


class PoolFailed(Exception):
    """This pool could not be measured; the message says why and what to look at."""


@dataclass
class Session:
    """What every pool's run shares: the broker, the client, the HTTP server, the work size."""

    broker_url: str
    env: dict[str, str]
    token: str
    client: Celeriac
    http_url: str
    iterations: int
    concurrency: int | None
    reporter: Reporter


def backend_for(broker_url: str) -> str:
    """Where the demo's results go: the broker itself (Redis, SQLite), or on RabbitMQ, which
    stores nothing, messages to the demo client's reply queue (``rpc://``)."""
    scheme = broker_url.split("://", 1)[0].lower()
    return "rpc://" if scheme in AMQP_SCHEMES else broker_url


@contextlib.contextmanager
def _broker_env(url: str) -> Iterator[dict[str, str]]:
    """Point this process and the workers at the demo's broker, whatever the shell says."""
    saved = {key: os.environ.get(key) for key in ENV_KEYS}
    os.environ.update({ENV_KEYS[0]: url, ENV_KEYS[1]: backend_for(url)})
    try:
        yield dict(os.environ)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_demo(options: DemoOptions, reporter: Reporter) -> DemoReport:
    """Run every pool asked for; on Ctrl-C, stop what runs and return what was measured."""
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="celeriac-demo-")
    url = options.broker_url or f"sqlite:///{os.path.join(workdir, 'celeriac.sqlite3')}"
    iterations = plan.calibrate()
    report = DemoReport(
        celeriac=__version__,
        broker=safe_url(url),
        cpu_count=os.cpu_count() or 1,
        cpu_batch={
            "tasks": plan.CPU_TASKS,
            "each_cpu_s": plan.CPU_TASK_S,
            "iterations": iterations,
        },
        io_batch={"tasks": plan.IO_TASKS, "each_s": plan.IO_TASK_S},
        pools=[],
    )
    server = LoopbackServer()
    token = uuid.uuid4().hex
    with adopting_orphans():
        _run_pools(options, report, url, token, server, workdir, reporter, iterations)
    report.elapsed_s = time.monotonic() - started
    return report


def _run_pools(
    options: DemoOptions,
    report: DemoReport,
    url: str,
    token: str,
    server: LoopbackServer,
    workdir: str,
    reporter: Reporter,
    iterations: int,
) -> None:
    try:
        with _broker_env(url) as env:
            client = Celeriac(
                "celeriac-demo", broker=url, backend=backend_for(url), task_routes=ROUTES
            )
            session = Session(
                url, env, token, client, server.url, iterations, options.concurrency, reporter
            )
            try:
                for pool in options.pools:
                    report.pools.append(run_pool(session, pool))
            except KeyboardInterrupt:
                report.interrupted = True
            finally:
                client.close()
    finally:
        with sigint_deferred():
            left = sweep(token)
            if left:
                logger.warning("stopped %d leftover demo process(es): %s", len(left), left)
            server.stop()
            reporter.close()
            shutil.rmtree(workdir, ignore_errors=True)


def run_pool(session: Session, pool: str) -> PoolReport:
    reporter = session.reporter
    install = plan.missing_library(pool)
    if install is not None:
        reporter.pool_done(pool, f"skipped: {install}")
        return PoolReport(pool, "skipped", reason=f"{pool} is not installed", install=install)
    concurrency = plan.concurrency_for(pool, session.concurrency)
    calls = plan.calls_for(pool, session.iterations, session.http_url)
    reporter.pool_started(pool, len(calls))
    with sigint_deferred():  # a Ctrl-C right after the fork must still find the worker
        worker = DemoWorker(pool, concurrency, session.env, session.token)
    try:
        observation = observe_pool(session, worker, calls)
    except PoolFailed as exc:
        reporter.pool_done(pool, "failed")
        return PoolReport(pool, "error", reason=str(exc), log_tail=worker.log_tail())
    finally:
        worker.stop()
    facts = measure(observation)
    checks = failed_tasks(observation.records) + check(facts)
    status = "contradiction" if contradicts(checks) else "ok"
    reporter.pool_done(pool, "matches the seed" if status == "ok" else "CONTRADICTS the seed")
    return PoolReport(pool, status, facts=facts, checks=checks)


def observe_pool(session: Session, worker: DemoWorker, calls: list[plan.Call]) -> Observation:
    """Run the batches on a started worker and look at it before it stops."""
    pool = worker.pool
    if not worker.wait_ready(STARTUP_TIMEOUT_S):
        why = "exited" if not worker.alive() else f"was not ready in {STARTUP_TIMEOUT_S:.0f}s"
        raise PoolFailed(f"the {pool} worker {why}; the end of its log says why")
    session.reporter.phase(pool, f"worker pid {worker.pid} ready")
    records: list[TaskRecord] = []
    walls: dict[str, float] = {}
    for batch, text in (("seed", "seed tasks"), ("cpu", "CPU batch"), ("io", "I/O batch")):
        session.reporter.phase(pool, text)
        batch_calls = [c for c in calls if c.batch == batch]
        sent_at = time.monotonic()
        results = [_send(session, c) for c in batch_calls]
        records += collect(session, worker, batch_calls, results)
        walls[batch] = time.monotonic() - sent_at
        worker.snapshot()
    processes = process_tree(worker.pid)
    conns, source = connections(session.broker_url, processes)
    return Observation(
        pool=pool,
        concurrency=worker.concurrency,
        manager_pid=worker.pid,
        processes=processes,
        connections=conns,
        connection_source=source,
        records=records,
        client_wall_s=walls,
    )


def _send(session: Session, call: plan.Call) -> AsyncResult:
    try:
        return session.client.send_task(call.task, list(call.args))
    except CeleriacError as exc:
        raise PoolFailed(f"could not send {call.label}: {exc}") from exc


def collect(
    session: Session, worker: DemoWorker, calls: list[plan.Call], results: list[AsyncResult]
) -> list[TaskRecord]:
    """Wait for each result in turn, checking every few seconds that the worker lives."""
    deadline = time.monotonic() + BATCH_TIMEOUT_S
    records = []
    for call, result in zip(calls, results, strict=True):
        value = _wait(worker, call, result, deadline)
        session.reporter.advance(worker.pool)
        if isinstance(value, BaseException):
            value = f"{type(value).__name__}: {value}"
        records.append(
            TaskRecord(
                call.batch, call.task, call.label, result.id, result.state, value,
                result.place or {},
            )
        )  # fmt: skip
        _forget(result)
    return records


def _forget(result: AsyncResult) -> None:
    """Leave nothing behind in a broker the user lent us (results expire anyway)."""
    try:
        result.forget()
    except CeleriacError as exc:
        logger.debug("could not forget the result of %s: %s", result.id, exc)


def _wait(worker: DemoWorker, call: plan.Call, result: AsyncResult, deadline: float) -> object:
    while True:
        remaining = deadline - time.monotonic()
        try:
            return result.get(timeout=max(0.05, min(WAIT_SLICE_S, remaining)), propagate=False)
        except ResultTimeout:
            if not worker.alive():
                raise PoolFailed(
                    f"the {worker.pool} worker exited while {call.label} was pending"
                ) from None
            if time.monotonic() >= deadline:
                raise PoolFailed(
                    f"{call.label} did not finish within {BATCH_TIMEOUT_S:.0f}s on the "
                    f"{worker.pool} worker"
                ) from None
        except CeleriacError as exc:
            raise PoolFailed(f"could not read the result of {call.label}: {exc}") from exc
