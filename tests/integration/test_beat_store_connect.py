"""Beat keeps its schedule on the broker however the broker is reached: Celery's
``sentinel://`` list (``master_name`` in ``broker_transport_options``) and ``redis://`` with
TLS from ``broker_use_ssl``, as the broker itself connects. Real redis-server, sentinels
and TLS on loopback."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from celeriac import Celery
from celeriac.beat.scheduler import Beat
from celeriac.beat.store import BeatStore, Pending, open_store
from celeriac.errors import ConfigurationError
from tests.support.redis_sentinel import MASTER_NAME, SentinelCluster, start_sentinel_cluster
from tests.support.redis_tls import ADMIN_PASSWORD, SecureRedis, start_secure_redis

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def cluster() -> Iterator[SentinelCluster]:
    started = start_sentinel_cluster()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def tls_redis() -> Iterator[SecureRedis]:
    server = start_secure_redis(tls=True)
    try:
        yield server
    finally:
        server.stop()


def _claim_round_trip(store: BeatStore) -> None:
    """A claim, a second claim of the same slot refused, a confirm, read back."""
    name = f"entry-{time.monotonic_ns()}"
    pending = Pending(name, "2026-01-01T00:00", time.time() + 30, "beat.test")
    assert store.claim(name, None, "2026-01-01T00:00", pending)
    assert not store.claim(name, None, "2026-01-01T00:00", pending)  # claimed once only
    assert store.last_slots()[name] == "2026-01-01T00:00"
    store.confirm(name, "2026-01-01T00:00")
    assert all(claim.name != name for claim in store.expired(time.time() + 3600))


def test_beat_store_on_a_sentinel_broker(cluster: SentinelCluster) -> None:
    app = Celery("beat-sentinel", broker=cluster.url(0))
    app.conf.broker_transport_options = {"master_name": MASTER_NAME}
    store = open_store(app.broker_url, app.conf)
    try:
        _claim_round_trip(store)
        beat = Beat(app, max_interval_s=1.0)  # the scheduler opens it the same way
        try:
            assert isinstance(beat.store.last_slots(), dict)
        finally:
            beat.store.close()
    finally:
        store.close()
        app.close()
    assert cluster.client(db=0).hlen("celeriac.beat.last") >= 1  # on the sentinels' master


def test_beat_store_on_sentinel_without_master_name_says_what_to_set(
    cluster: SentinelCluster,
) -> None:
    app = Celery("beat-sentinel", broker=cluster.url(0))
    with pytest.raises(ConfigurationError, match="master_name"):
        open_store(app.broker_url, app.conf)
    app.close()


def test_beat_store_uses_broker_use_ssl(tls_redis: SecureRedis) -> None:
    assert tls_redis.certs is not None
    url = f"rediss://:{quote(ADMIN_PASSWORD)}@127.0.0.1:{tls_redis.port}/0"
    app = Celery("beat-tls", broker=url)
    app.conf.broker_use_ssl = {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": str(tls_redis.certs.ca),
        "ssl_certfile": str(tls_redis.certs.client_cert),
        "ssl_keyfile": str(tls_redis.certs.client_key),
    }
    store = open_store(app.broker_url, app.conf)
    try:
        _claim_round_trip(store)
    finally:
        store.close()
        app.close()
    admin = tls_redis.admin()
    try:
        assert admin.hlen("celeriac.beat.last") == 1
    finally:
        admin.close()
