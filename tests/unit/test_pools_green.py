"""The gevent and eventlet pools' own parts, without monkey-patching this test process.

Whole runs need a patched process and are in tests/integration/test_pools_inprocess.py.
eventlet is never imported here: importing it warns that it is deprecated.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest

from celeriac import Celery
from celeriac.errors import ConfigurationError
from celeriac.worker.place import greenlet_id
from celeriac.worker.pools import pool_class
from celeriac.worker.runtime import WorkerRuntime


@pytest.mark.parametrize("pool", ["gevent", "eventlet"])
def test_missing_library_error_says_what_to_install(
    pool: str, app: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, pool, None)  # makes `import <pool>` fail
    runtime = WorkerRuntime(app, "unit@host", pool, 2, ["celery"])
    with pytest.raises(ConfigurationError, match=rf"pip install 'celeriac\[{pool}\]'"):
        pool_class(pool)(runtime)


def test_gevent_pool_warns_when_socket_is_not_patched(
    app: Celery, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("gevent")
    runtime = WorkerRuntime(app, "unit@host", "gevent", 2, ["celery"])
    with caplog.at_level(logging.WARNING, logger="celeriac.worker.pools.gevent"):
        pool_class("gevent")(runtime)
    assert "gevent.monkey.patch_all()" in caplog.text


def test_greenlet_slots_count_spawned_greenlets_until_they_end() -> None:
    gevent_event = pytest.importorskip("gevent.event")
    from celeriac.worker.pools.gevent import GreenletSlots

    slots = GreenletSlots(3)
    release = gevent_event.Event()
    slots.submit(release.wait)
    slots.submit(release.wait)
    assert slots.free() == 1
    release.set()
    assert slots.join(10)
    assert slots.free() == 3


def test_each_greenlet_reports_its_own_greenlet_id() -> None:
    gevent_event = pytest.importorskip("gevent.event")
    from celeriac.worker.pools.gevent import GreenletSlots

    slots = GreenletSlots(3)
    release, all_reported = gevent_event.Event(), gevent_event.Event()
    seen: list[dict[str, Any]] = []

    def record() -> None:
        seen.append(slots.place_extras())
        if len(seen) == 3:
            all_reported.set()
        release.wait()  # keep every greenlet alive until all three have reported

    for _ in range(3):
        slots.submit(record)
    assert all_reported.wait(10)
    release.set()
    assert slots.join(10)
    assert greenlet_id() is None  # the caller is the main greenlet, not a pool greenlet
    assert len({extras["greenlet"] for extras in seen}) == 3
    assert None not in {extras["greenlet"] for extras in seen}
