"""The metrics view's names and labels (celery-exporter's), fed through the lifecycle points,
and prometheus_client's multiprocess mode adding up a forked child's counts."""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest, values
from prometheus_client.parser import text_string_to_metric_families

from celeriac import lifecycle
from celeriac.metrics import recovery
from celeriac.metrics.families import RUNTIME_BUCKETS, TaskMetrics
from celeriac.metrics.store import ENV, FilesCollector, MultiprocessDir, remove_stale_dirs
from celeriac.metrics.view import MetricsView, host_of


def _families(registry: CollectorRegistry) -> dict[str, Any]:
    text = generate_latest(registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def _sample(families: dict[str, Any], family: str, suffix: str = "_total", **labels: str) -> float:
    found = families.get(family)
    return float(
        sum(
            s.value
            for s in (found.samples if found is not None else ())
            if s.name == family + suffix and all(s.labels.get(k) == v for k, v in labels.items())
        )
    )


@pytest.fixture
def view() -> Iterator[tuple[MetricsView, CollectorRegistry]]:
    registry = CollectorRegistry()
    installed = MetricsView(TaskMetrics(registry), "w1@box.example", "prefork")
    installed.install()
    try:
        yield installed, registry
    finally:
        installed.uninstall()


def _job(name: str, queue: str = "celery") -> Any:
    return SimpleNamespace(
        message=SimpleNamespace(task=name), delivery=SimpleNamespace(queue=queue)
    )


def _ctx(child: int | None) -> Any:
    return SimpleNamespace(place_base={"child_index": child})


def test_hostname_label_is_the_host_part() -> None:
    assert host_of("celery@box.example") == "box.example"
    assert host_of("plain") == "plain"


def test_points_move_celery_exporters_metrics(view: tuple[MetricsView, CollectorRegistry]) -> None:
    installed, registry = view
    ctx, job = _ctx(1), _job("proj.add", "images")
    for _ in range(3):
        lifecycle.task_received.emit(ctx, job)
        lifecycle.task_started.emit(ctx, job, None)
    lifecycle.task_succeeded.emit(ctx, job, SimpleNamespace(runtime_s=0.02))
    lifecycle.task_failed.emit(ctx, job, SimpleNamespace(exc=KeyError("k")))
    lifecycle.task_retried.emit(ctx, job, SimpleNamespace(exc=None))
    for _ in range(3):
        lifecycle.task_finished.emit(ctx, job, None)
    lifecycle.task_revoked.emit(ctx, job, False, None, False)
    recovery.recovered(4, 1)
    recovery.lost("proj.add")
    installed.flush()  # the flusher thread's work, done now
    f = _families(registry)
    labels = {"name": "proj.add", "hostname": "box.example", "queue_name": "images"}
    assert _sample(f, "celery_task_received", **labels) == 3
    assert _sample(f, "celery_task_started", **labels) == 3
    assert _sample(f, "celery_task_succeeded", **labels) == 1
    assert _sample(f, "celery_task_failed", exception="KeyError", **labels) == 1
    assert _sample(f, "celery_task_retried", **labels) == 1
    assert _sample(f, "celery_task_revoked", **labels) == 1
    assert _sample(f, "celery_task_runtime_seconds", "_count", **labels) == 1
    buckets = {s.labels["le"] for s in f["celery_task_runtime_seconds"].samples if "le" in s.labels}
    assert len(buckets) == len(RUNTIME_BUCKETS)  # celery-exporter's default: up to 10 s, +Inf
    assert _sample(f, "celery_worker_tasks_active", "", hostname="box.example") == 0
    child = {"hostname": "box.example", "pool": "prefork", "child": "1"}
    assert _sample(f, "celeriac_child_tasks_processed", **child) == 3
    assert _sample(f, "celeriac_messages_restored", hostname="box.example") == 4
    assert _sample(f, "celeriac_messages_dead_lettered", hostname="box.example") == 1
    assert _sample(f, "celeriac_tasks_lost", name="proj.add") == 1


def test_label_names_are_celery_exporters(view: tuple[MetricsView, CollectorRegistry]) -> None:
    installed, registry = view
    m = installed.m
    m.failed.labels("t", "h", "E", "q").inc()
    for counter in (m.sent, m.received, m.started, m.succeeded, m.retried, m.revoked):
        counter.labels("t", "h", "q").inc()
    m.tasks_active.labels("h").set(0)
    f = _families(registry)
    for name in ("sent", "received", "started", "succeeded", "retried", "revoked"):
        (sample,) = f[f"celery_task_{name}"].samples[:1]
        assert set(sample.labels) == {"name", "hostname", "queue_name"}, name
    failed = f["celery_task_failed"].samples[0]
    assert set(failed.labels) == {"name", "hostname", "exception", "queue_name"}
    assert set(f["celery_worker_tasks_active"].samples[0].labels) == {"hostname"}


def test_unsubscribed_view_costs_nothing(view: tuple[MetricsView, CollectorRegistry]) -> None:
    installed, _ = view
    installed.uninstall()
    assert installed.received not in lifecycle.task_received.hooks
    assert recovery.recovered_hooks == ()
    installed.install()  # the fixture uninstalls again


def test_multiprocess_mode_adds_up_a_forked_childs_counts(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, str(tmp_path))
    before = values.ValueClass
    try:
        store = MultiprocessDir.take()
        assert not store.owned
        metrics = TaskMetrics(CollectorRegistry())
        metrics.succeeded.labels("t", "h", "q").inc(2)  # the parent's own
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                metrics.succeeded.labels("t", "h", "q").inc(5)
                metrics.tasks_active.labels("h").inc()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        (tmp_path / "counter_999999.db").touch()  # a process that has only just begun
        served = CollectorRegistry()
        served.register(FilesCollector(str(tmp_path)))
        assert _sample(_families(served), "celery_task_succeeded", name="t") == 7
        # the child is gone: its live gauge goes, its counts stay
        assert _sample(_families(served), "celery_worker_tasks_active", "") == 1
        store.forget_dead_processes()
        assert _sample(_families(served), "celery_worker_tasks_active", "") == 0
        assert _sample(_families(served), "celery_task_succeeded", name="t") == 7
    finally:
        values.ValueClass = before


def test_a_dead_workers_private_dir_is_removed(tmp_path: Any, monkeypatch: Any) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - exits at once: its pid is then free
        os._exit(0)
    os.waitpid(pid, 0)
    stale = tmp_path / f"celeriac-metrics-{pid}-abc"
    stale.mkdir()
    live = tmp_path / f"celeriac-metrics-{os.getpid()}-abc"
    live.mkdir()
    assert remove_stale_dirs() == 1
    assert not stale.exists() and live.exists()
