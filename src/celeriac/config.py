"""Settings, with Celery's lowercase names and defaults.

``app.conf`` is a :class:`Settings`. Unknown names are kept but warned about, with the
closest known name, because a mistyped setting that is silently ignored is worse than noise.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Iterator, Mapping, MutableMapping
from types import FunctionType, ModuleType
from typing import Any

from .errors import ImproperlyConfigured

DEFAULT_BROKER_URL = "sqlite:///celeriac.sqlite3"

DEFAULTS: dict[str, Any] = {
    # broker
    "broker_url": None,
    "broker_transport_options": {},
    "broker_connection_timeout": 4.0,
    "broker_connection_retry": True,
    "broker_connection_retry_on_startup": True,
    "broker_connection_max_retries": 100,
    "broker_heartbeat": None,
    "broker_pool_limit": 10,
    # RabbitMQ (Celery 5.5): the queue type of the celery_delayed_* topology (countdown/ETA
    # on quorum queues)
    "broker_native_delayed_delivery_queue_type": "quorum",
    # TLS for a redis:// or rediss:// broker: True, or Celery's dict (ssl_cert_reqs,
    # ssl_ca_certs, ssl_certfile, ssl_keyfile, ...); redis_backend_use_ssl for the results
    "broker_use_ssl": None,
    "redis_backend_use_ssl": None,
    # results
    "result_backend": None,
    "result_backend_transport_options": {},
    "result_expires": 86400,
    "result_serializer": "json",
    "result_accept_content": None,
    # exception classes a stored result may be rebuilt as, beyond builtins, Celery's and the
    # app's task modules: module names ("proj.errors") or class paths ("proj.errors.Busy")
    "result_exception_allowlist": (),
    "result_extended": False,
    "result_persistent": None,
    "result_chord_ordered": True,
    "result_compression": None,
    "result_backend_always_retry": False,
    "chord_expires": None,
    # tasks
    "task_routes": None,
    "task_queues": None,
    "task_default_queue": "celery",
    "task_default_exchange": None,
    "task_default_exchange_type": "direct",
    "task_queue_max_priority": None,
    "task_default_routing_key": None,
    "task_default_priority": None,
    "task_create_missing_queues": True,
    # RabbitMQ (Celery 5.5): "quorum" declares the default queue, or queues created on
    # demand, with x-queue-type: quorum
    "task_default_queue_type": "classic",
    "task_create_missing_queue_type": "classic",
    "task_serializer": "json",
    "accept_content": ["json"],
    "task_compression": None,
    "task_ignore_result": False,
    "task_store_errors_even_if_ignored": False,
    "task_track_started": False,
    "task_acks_late": False,
    "task_acks_on_failure_or_timeout": True,
    "task_reject_on_worker_lost": None,
    "task_time_limit": None,
    "task_soft_time_limit": None,
    "task_always_eager": False,
    "task_eager_propagates": False,
    "task_allow_error_cb_on_chord_header": False,
    "task_store_eager_result": False,
    "task_annotations": None,
    "task_publish_retry": True,
    "task_publish_retry_policy": {
        "max_retries": 3,
        "interval_start": 0.0,
        "interval_step": 0.2,
        "interval_max": 0.2,
    },
    "task_send_sent_event": False,
    "task_protocol": 2,
    "task_default_rate_limit": None,
    "task_rate_limit_scope": "worker",  # "global": rate limits hold across every worker
    "task_remote_tracebacks": False,
    # worker
    "worker_concurrency": None,
    "worker_pool": "prefork",
    "worker_prefetch_multiplier": 4,
    "worker_max_tasks_per_child": None,
    "worker_max_memory_per_child": None,
    "worker_send_task_events": False,
    "dashboard_max_tasks": 10_000,  # tasks `celeriac dashboard` keeps in the backend
    "worker_hijack_root_logger": True,
    "worker_redirect_stdouts": True,
    "worker_redirect_stdouts_level": "WARNING",
    "worker_lost_wait": 10.0,
    "worker_proc_alive_timeout": 4.0,
    "worker_state_db": None,
    "worker_disable_rate_limits": False,
    "worker_log_format": None,
    "worker_log_color": None,
    "worker_task_log_format": None,
    "worker_cancel_long_running_tasks_on_connection_loss": False,
    "worker_deduplicate_successful_tasks": False,
    "worker_enable_remote_control": True,
    # events: Redis carries them on pub/sub channels named after the exchange; the queue
    # options shape the AMQP queue a monitor declares and are accepted for Redis
    "event_exchange": "celeryev",
    "event_queue_prefix": "celeryev",
    "event_queue_ttl": 5.0,
    "event_queue_expires": 60.0,
    "event_queue_exclusive": True,
    "event_queue_durable": False,
    "event_serializer": "json",  # accepted; events are always sent as JSON, Celery's default
    # app
    "imports": (),
    "include": (),
    "timezone": None,
    "enable_utc": True,
    "beat_schedule": {},
    "beat_scheduler": None,
    "beat_max_loop_interval": 0,
    "beat_schedule_filename": "celerybeat-schedule",  # accepted; beat keeps its state in the broker
    "beat_sync_every": 0,  # accepted; every claim is written to the broker at once
    "beat_cron_starting_deadline": None,  # accepted; see beat_catch_up
    "beat_catch_up": "once",  # after every beat was down: "once", "none" or "all" missed runs
    "beat_catch_up_after": 5.0,  # a run due longer ago than this (seconds) counts as missed
    "beat_claim_timeout": 10.0,  # a claimed run not confirmed sent by then is sent by another beat
    "security_key": None,
    # celeriac's own
    "worker_heartbeat_interval": 1.0,
    "worker_dead_after": 5.0,
    "task_max_redeliveries": 5,
    "worker_prefetch_window": 0.01,  # seconds of short tasks a consumer may hold beyond the count
}

ENV_SETTINGS = {
    "broker_url": "CELERIAC_BROKER_URL",
    "result_backend": "CELERIAC_RESULT_BACKEND",
}


def closest_setting(name: str) -> str | None:
    import difflib  # only for error messages

    match = difflib.get_close_matches(name.lower(), DEFAULTS, n=1, cutoff=0.6)
    return match[0] if match else None


class Settings(MutableMapping[str, Any]):
    """The app's configuration: attribute and item access, Celery's names."""

    version: int

    def __init__(self, initial: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_values", {})
        object.__setattr__(self, "version", 0)  # bumped on every change: caches key on it
        if initial:
            self.update(initial)

    # mapping protocol
    def __getitem__(self, name: str) -> Any:
        values: dict[str, Any] = object.__getattribute__(self, "_values")
        if name in values:
            return values[name]
        if name in DEFAULTS:
            return DEFAULTS[name]
        raise KeyError(name)

    def __setitem__(self, name: str, value: Any) -> None:
        if name not in DEFAULTS:
            hint = closest_setting(name)
            advice = f"; did you mean {hint!r}?" if hint else "; check the name in the docs"
            warnings.warn(
                f"unknown setting {name!r}{advice} It is kept, but celeriac does not use it.",
                UserWarning,
                stacklevel=3,
            )
        self._values[name] = value
        object.__setattr__(self, "version", self.version + 1)

    def __delitem__(self, name: str) -> None:
        del self._values[name]
        object.__setattr__(self, "version", self.version + 1)

    def __iter__(self) -> Iterator[str]:
        return iter({**DEFAULTS, **self._values})

    def __len__(self) -> int:
        return len({**DEFAULTS, **self._values})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            hint = closest_setting(name)
            raise AttributeError(
                f"no setting {name!r}" + (f"; did you mean {hint!r}?" if hint else "")
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def is_set(self, name: str) -> bool:
        return name in self._values

    def copy(self) -> Settings:
        return Settings(self._values)

    def from_object(self, obj: object | str, namespace: str | None = None) -> None:
        """Read the settings of a module, object, mapping or dotted path.

        Without a namespace, the public lowercase attributes are read. With one, such as
        Django's ``namespace="CELERY"``, only names with that prefix are read, and
        ``CELERY_TASK_ACKS_LATE`` sets ``task_acks_late``: ignoring the namespace would
        silently leave every setting at its default.
        """
        source = load_object(obj) if isinstance(obj, str) else obj
        items = source.items() if isinstance(source, Mapping) else _public_attributes(source)
        for name, value in items:
            if namespace:
                setting = _strip_namespace(str(name), namespace)
            elif isinstance(source, Mapping) or name.islower():
                setting = name
            else:
                setting = None
            if setting is not None:
                self[setting] = value

    def resolved(self, name: str) -> Any:
        """The value after the environment (CELERIAC_BROKER_URL, ...) is applied."""
        env = ENV_SETTINGS.get(name)
        if env and os.environ.get(env):
            return os.environ[env]
        return self[name]


def _strip_namespace(name: str, namespace: str) -> str | None:
    prefix = namespace.rstrip("_").upper() + "_"
    if not name.upper().startswith(prefix) or len(name) == len(prefix):
        return None
    return name[len(prefix) :].lower()


def _public_attributes(source: object) -> Iterator[tuple[str, Any]]:
    for name in dir(source):
        if name.startswith("_"):
            continue
        value = getattr(source, name)
        if isinstance(value, (ModuleType, FunctionType, type)):
            continue
        yield name, value


def load_object(path: str) -> Any:
    """Import ``module``, ``module:attr`` or ``module.attr``."""
    module_name, _, attr = path.partition(":")
    try:
        module = _import(module_name)
    except ModuleNotFoundError as exc:
        # "module.attr" only when the last part is what is missing: a module that exists
        # but fails on one of its own imports must show that import's error
        if attr or "." not in module_name or exc.name != module_name:
            raise ImproperlyConfigured(f"cannot import {module_name!r}: {exc}") from exc
        module_name, _, attr = module_name.rpartition(".")
        try:
            module = _import(module_name)
        except ModuleNotFoundError:
            raise ImproperlyConfigured(f"cannot import {path!r}: {exc}") from exc
    if not attr:
        return module
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImproperlyConfigured(f"module {module_name!r} has no attribute {attr!r}") from None


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError:
        raise
    except Exception as exc:  # it exists but fails while importing: SyntaxError, ImportError...
        raise ImproperlyConfigured(
            f"importing {name!r} failed with {type(exc).__name__}: {exc}"
        ) from exc
