"""The Worker: start-up, the banner, signals and shutdown. It owns one pool."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

from .. import __version__, lifecycle
from ..errors import ConfigurationError
from ..queues import declare_bindings
from ..urls import safe_url
from . import events as worker_events
from . import log_lines
from .control import ControlListener
from .pools import ALIASES, pool_class
from .runtime import ColdShutdown, WorkerRuntime
from .statedb import StateDB

if TYPE_CHECKING:
    from ..app import Celeriac
    from ..beat.embedded import EmbeddedBeat
    from ..metrics.service import MetricsService

logger = logging.getLogger(__name__)

# how long "ready." waits for the remote control subscription (ping and inspect reach it then)
CONTROL_READY_S = 5.0


def default_nodename(name: str | None = None) -> str:
    """Celery's node names: ``celery@host`` by default; ``%h``, ``%n``, ``%d`` expand."""
    host = socket.gethostname()
    short, _, domain = host.partition(".")
    name = name or "celery@%h"
    name = name.replace("%h", host).replace("%n", short).replace("%d", domain)
    return name if "@" in name else f"{name}@{host}"


def default_concurrency(pool_name: str) -> int:
    """Celery's defaults: one process per CPU for prefork, 1 for solo, many for I/O pools."""
    cpus = os.cpu_count() or 1
    return {"prefork": cpus, "solo": 1, "threads": cpus * 5}.get(pool_name, 100)


class Worker:
    def __init__(
        self,
        app: Celeriac,
        pool: str | None = None,
        concurrency: int | None = None,
        queues: Sequence[str] | None = None,
        hostname: str | None = None,
        max_tasks_per_child: int | None = None,
        max_memory_per_child: int | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        prefetch_multiplier: int | None = None,
        banner: bool = True,
        statedb: str | None = None,
        *,
        task_events: bool = False,
        beat: bool = False,
        schedule_filename: str | None = None,
        scheduler: str | None = None,
        autoscale: tuple[int, int] | None = None,
        optimization: str | None = None,
        exclude_queues: Sequence[str] = (),
        notes: Sequence[str] = (),
        metrics_port: int | None = None,
        metrics_address: str = "127.0.0.1",
        metrics_ready_within: float | None = None,
    ) -> None:
        conf = app.conf
        pool_name = ALIASES.get(pool or conf.worker_pool, pool or conf.worker_pool)
        self.pool_cls = pool_class(pool_name)
        if concurrency is None:
            concurrency = conf.worker_concurrency or default_concurrency(pool_name)
        if pool_name == "solo":
            concurrency = 1
        self.autoscale = _autoscale_for(pool_name, autoscale)
        if self.autoscale is not None:
            concurrency = self.autoscale[1]  # start at MIN, as Celery does
        elif int(concurrency) < 1:
            raise ValueError(f"--concurrency must be at least 1, got {concurrency}")
        self.app = app
        self.banner = banner
        self.statedb_path = statedb or conf.worker_state_db
        # -E: task events (worker events are always sent); -B runs the embedded beat
        self.task_events = bool(task_events or conf.worker_send_task_events)
        if task_events:
            conf.worker_send_task_events = True
        self.beat = beat
        self.schedule_filename = (
            schedule_filename or conf.get("beat_schedule_filename") or "celerybeat-schedule"
        )
        self.scheduler = scheduler or conf.beat_scheduler
        self.optimization = optimization or "default"
        self.notes = list(notes)
        # --metrics-port: /metrics, /healthz and /readyz (celeriac.metrics); None: no cost
        self.metrics_port = metrics_port
        self.metrics_address = metrics_address
        self.metrics_ready_within = metrics_ready_within
        if self.optimization == "fair" or self.autoscale is not None:
            # hold no message that a free child (or slot) could not start now; autoscaling
            # also needs the waiting work in the queue, where it counts towards growing
            prefetch_multiplier = 1
        self.runtime = WorkerRuntime(
            app=app,
            nodename=default_nodename(hostname),
            pool_name=pool_name,
            concurrency=int(concurrency),
            queues=_consumed_queues(app.queues.select(queues), exclude_queues),
            max_tasks_per_child=max_tasks_per_child or conf.worker_max_tasks_per_child,
            max_memory_per_child_kib=max_memory_per_child or conf.worker_max_memory_per_child,
            time_limit_s=time_limit if time_limit is not None else conf.task_time_limit,
            soft_time_limit_s=(
                soft_time_limit if soft_time_limit is not None else conf.task_soft_time_limit
            ),
            prefetch_multiplier=int(
                prefetch_multiplier
                if prefetch_multiplier is not None
                else conf.worker_prefetch_multiplier
            ),
            prefetch_window_s=(
                0.0 if self.optimization == "fair" else _window_setting(conf.worker_prefetch_window)
            ),
            autoscale=self.autoscale,
        )
        self._interrupts = 0
        # what celeryd_init receivers read as ``options`` (Celery passes the CLI's options)
        self.options: dict[str, Any] = {
            "pool": pool_name,
            "concurrency": self.runtime.concurrency,
            "queues": list(self.runtime.queues),
            "hostname": self.runtime.nodename,
        }
        if lifecycle.worker_initialised.hooks:
            lifecycle.worker_initialised.emit(self)

    @property
    def hostname(self) -> str:
        return self.runtime.nodename

    def _announce_ready(self) -> None:
        if lifecycle.worker_ready.hooks:
            lifecycle.worker_ready.emit(self)
        logger.info("%s ready.", self.runtime.nodename)

    def start(self) -> int:
        """Run until shut down; returns the process exit code."""
        app = self.app
        app.client_name = f"celeriac.worker.{os.getpid()}"
        app.close()  # connections opened before now were named as a client
        log_lines.install()
        app.import_task_modules()  # sends import_modules
        app.broker.ping()
        declare_bindings(app.broker, [app.queues[name] for name in self.runtime.queues])
        if lifecycle.worker_set_up.hooks:
            lifecycle.worker_set_up.emit(self)
        if self.banner:
            # the real stderr: with worker_redirect_stdouts, sys.stderr is a logger by now
            banner_stream = sys.__stderr__ or sys.stderr
            banner_stream.write(self.render_banner())
            banner_stream.flush()
        self._log_accepted_options()
        worker_events.install(self.runtime, self.task_events)  # before any fork
        metrics = self._start_metrics()  # before any fork: children inherit its view
        pool = self.pool_cls(self.runtime)
        state = StateDB(self.statedb_path) if self.statedb_path else None
        if state is not None:
            state.load(app)
        control = ControlListener(self.runtime, pool=pool)  # before the pool forks
        control.start()
        if not control.wait_subscribed(CONTROL_READY_S):
            logger.warning(
                "remote control is not listening yet after %.0f s; ping and inspect may miss "
                "this worker until it is",
                CONTROL_READY_S,
            )
        self._install_signals()
        if getattr(pool, "announces_ready", False):
            # prefork: once its children are forked
            cast(Any, pool).on_ready = self._announce_ready
        else:
            self._announce_ready()
        embedded_beat = self._start_beat() if self.beat else None  # -B
        try:
            code = pool.run()
        finally:
            if embedded_beat is not None:
                embedded_beat.stop()
            control.stop()
            if state is not None:
                state.save(app)
            if lifecycle.worker_stopped.hooks:
                lifecycle.worker_stopped.emit(self)
            if metrics is not None:
                metrics.stop()
            logger.info("%s stopped.", self.runtime.nodename)
            app.close()
        if getattr(pool, "recycle_requested", False):
            from .timelimits import reexec

            reexec()  # a task stuck past its hard time limit: start afresh (timelimits.py)
        return code

    def _start_metrics(self) -> MetricsService | None:
        if self.metrics_port is None:
            return None
        try:
            from ..metrics.service import MetricsService
        except ImportError as exc:
            raise ConfigurationError(
                f"--metrics-port needs prometheus_client ({exc}); install it with "
                "pip install 'celeriac[metrics]'"
            ) from None
        return MetricsService.start(
            self.runtime, self.metrics_port, self.metrics_address, self.metrics_ready_within
        )

    def render_banner(self) -> str:
        rt = self.runtime
        tasks = sorted(name for name in self.app.tasks if not name.startswith("celery."))
        lines = [
            f"\n -------------- {rt.nodename} v{__version__} (celeriac)",
            f"--- ***** ----- {sys.platform} python {sys.version.split()[0]}",
            "- *** --- * --- [config]",
            f"- ** ---------- .> app:         {self.app.main or '__main__'}:{id(self.app):#x}",
            f"- ** ---------- .> transport:   {safe_url(self.app.broker_url)}",
            f"- ** ---------- .> results:     {safe_url(self.app.backend_url)}",
            f"- *** --- * --- .> concurrency: {self._concurrency_text()}",
            f"-- ******* ---- .> task events: {self._events_text()}",
            "--- ***** ----- [queues]",
            *[f" -------------- .> {self._queue_line(q)}" for q in rt.queues],
            "",
            *(["[notes]", *[f"  . {note}" for note in self.notes], ""] if self.notes else []),
            "[tasks]",
            *[f"  . {name}" for name in tasks],
            "",
        ]
        return "\n".join(lines) + "\n"

    def _concurrency_text(self) -> str:
        rt = self.runtime
        if self.autoscale is not None:
            return f"{{min={self.autoscale[1]}, max={self.autoscale[0]}}} ({rt.pool_name})"
        fair = ", fair" if self.optimization == "fair" else ""
        return f"{rt.concurrency} ({rt.pool_name}{fair})"

    def _events_text(self) -> str:
        if self.task_events:
            return "ON"
        return "OFF (enable -E for monitoring)"

    def _log_accepted_options(self) -> None:
        """Say once, honestly, what was accepted but does nothing yet."""
        if self.beat and self.scheduler:
            logger.info("--scheduler %s accepted; celeriac's beat is used", self.scheduler)
        if self.notes and not self.banner:
            for note in self.notes:
                logger.info("note: %s", note)

    def _start_beat(self) -> EmbeddedBeat:
        from ..beat.embedded import EmbeddedBeat

        return EmbeddedBeat.start(self.app, self)

    def _queue_line(self, name: str) -> str:
        queue = self.app.queues[name]
        exchange = queue.exchange_name or name
        return f"{name:<12} exchange={exchange}({queue.exchange_type}) key={queue.routing_key}"

    def _install_signals(self) -> None:
        # ask signal.signal itself: under eventlet's patching, threading no longer knows
        # which thread is the main one
        try:
            signal.signal(signal.SIGTERM, self._on_warm)
        except ValueError:
            logger.warning("not in the main thread: SIGTERM/SIGINT/SIGQUIT are not handled")
            return
        signal.signal(signal.SIGINT, self._on_interrupt)
        if hasattr(signal, "SIGQUIT"):
            signal.signal(signal.SIGQUIT, self._on_cold)

    def _on_warm(self, signum: int, frame: FrameType | None) -> None:
        if not self.runtime.stop.warm.is_set():
            logger.warning("warm shutdown requested (%s)", signal.Signals(signum).name)
            self._shutting_down(signum, "Warm")
        self.runtime.stop.warm.set()

    def _shutting_down(self, signum: int, how: str) -> None:
        if lifecycle.worker_shutting_down.hooks:
            name = signal.Signals(signum).name
            lifecycle.worker_shutting_down.emit(self.runtime.nodename, name, how, 0)

    def _on_interrupt(self, signum: int, frame: FrameType | None) -> None:
        self._interrupts += 1
        if self._interrupts == 1:
            logger.warning("warm shutdown (Ctrl-C again for a cold one)")
            self._shutting_down(signum, "Warm")
            self.runtime.stop.warm.set()
        else:
            self._on_cold(signum, frame)

    def _on_cold(self, signum: int, frame: FrameType | None) -> Any:
        logger.warning("cold shutdown requested (%s)", signal.Signals(signum).name)
        self._shutting_down(signum, "Cold")
        self.runtime.stop.warm.set()
        self.runtime.stop.cold.set()
        if self.runtime.pool_name == "solo":
            raise ColdShutdown()
        return None


def _autoscale_for(pool_name: str, value: Any) -> tuple[int, int] | None:
    """(MAX, MIN) for prefork; other pools cannot grow or shrink, and say so."""
    if not value:
        return None
    if isinstance(value, str):
        from .autoscale import parse_autoscale

        high, low = parse_autoscale(value)
    else:
        high, low = (int(v) for v in value)
    if pool_name != "prefork":
        logger.warning(
            "--autoscale works with the prefork pool only; the %s pool keeps a fixed "
            "--concurrency, so %s,%s is ignored",
            pool_name,
            high,
            low,
        )
        return None
    return max(high, low), min(high, low)


def _consumed_queues(queues: Sequence[str], exclude: Sequence[str]) -> list[str]:
    kept = [q for q in queues if q not in set(exclude)]
    if not kept:
        raise ConfigurationError(
            f"-X/--exclude-queues {','.join(exclude)} leaves no queue to consume out of "
            f"{','.join(queues)}; name the queues to consume with -Q"
        )
    return kept


def _window_setting(value: Any) -> float:
    try:
        window = float(value or 0.0)
    except (TypeError, ValueError):
        window = -1.0
    if window < 0 or window != window:
        raise ValueError(
            f"worker_prefetch_window must be a number of seconds >= 0, got {value!r}; "
            "use 0 to hold exactly concurrency x worker_prefetch_multiplier messages"
        )
    return window
