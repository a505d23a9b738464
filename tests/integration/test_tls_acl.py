"""TLS and ACL users end to end, against a real redis-server that speaks only TLS
(``--port 0 --tls-port``, client certificates required) with a CA and certificates made in
the test, and an ACL user allowed only the commands celeriac needs (ACL_COMMANDS, the list
the README gives).

A prefork worker (its children included) and a client use ``rediss://user:password@...``
with Celery's query options; another client uses ``redis://`` with the ``broker_use_ssl`` and
``redis_backend_use_ssl`` dicts Celery takes.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from celeriac import Celery, chord, group
from celeriac.errors import BrokerError
from tests.support.redis_tls import SecureRedis, start_secure_redis
from tests.support.workers import WorkerProcess, start_celeriac_worker

WAIT_S = 20.0
USER, PASSWORD = "celeriac-app", "Acl-Us3r-pw"

# every command a celeriac worker, client, result backend and remote control send (checked
# by this test: the round trip below runs as a user allowed these and nothing else)
ACL_COMMANDS = [
    # connection
    *("hello", "ping", "select", "client|setname", "client|id", "client|tracking"),
    "client|unblock",
    # scripts and transactions
    *("evalsha", "eval", "script|load", "multi", "exec", "watch", "unwatch", "discard"),
    # queues, unacked messages, results, chords, revokes
    *("lpush", "rpush", "rpop", "lrange", "llen", "lrem", "blmove", "brpop"),
    *("hset", "hget", "hdel", "sadd", "srem", "smembers", "sismember"),
    *("zadd", "zrem", "zrange", "zrangebyscore", "zremrangebyscore", "zcard"),
    *("get", "set", "mget", "del", "unlink", "incr", "incrby", "expire", "exists"),
    # result notifications, remote control, events
    *("publish", "subscribe", "unsubscribe", "psubscribe", "punsubscribe"),
]


@pytest.fixture(scope="session")
def tls_redis() -> Iterator[SecureRedis]:
    server = start_secure_redis(tls=True)
    admin = server.admin()
    admin.acl_setuser(
        USER,
        enabled=True,
        passwords=[f"+{PASSWORD}"],
        keys=["*"],
        channels=["*"],
        commands=["-@all", *(f"+{name}" for name in ACL_COMMANDS)],
    )
    admin.close()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def urls(tls_redis: SecureRedis) -> tuple[str, str]:
    """Broker and backend URLs as the ACL user, spelling ssl_cert_reqs as Celery's docs do."""
    admin = tls_redis.admin()
    admin.flushall()
    admin.close()
    broker, backend = (
        tls_redis.url(db, user=USER, password=PASSWORD).replace(
            "ssl_cert_reqs=required", "ssl_cert_reqs=CERT_REQUIRED"
        )
        for db in (0, 1)
    )
    return broker, backend


@pytest.fixture
def worker(urls: tuple[str, str]) -> Iterator[WorkerProcess]:
    broker, backend = urls
    process = start_celeriac_worker(
        "core_tasks", broker, "-P", "prefork", "-c", "2", backend_url=backend
    )
    yield process
    process.stop()
    process.log_path.unlink(missing_ok=True)


@pytest.fixture
def client(urls: tuple[str, str]) -> Iterator[Celery]:
    broker, backend = urls
    app = Celery("tls_client", broker=broker, backend=backend)
    yield app
    app.close()


def test_prefork_worker_and_client_round_trip_over_tls_as_an_acl_user(
    worker: WorkerProcess, client: Celery
) -> None:
    assert client.send_task("core.add", (2, 3)).get(timeout=WAIT_S) == 5
    pids = {client.send_task("core.pid").get(timeout=WAIT_S) for _ in range(4)}
    assert pids <= {child.pid for child in worker.children()}  # children connect over TLS too
    failed = client.send_task("core.fail_builtin", ("over tls",))
    with pytest.raises(ValueError, match="over tls"):
        failed.get(timeout=WAIT_S)


def test_the_acl_user_is_really_restricted(tls_redis: SecureRedis) -> None:
    admin = tls_redis.admin()
    dry_run: Any = admin.execute_command  # redis-py leaves it untyped
    try:
        for command in (("FLUSHALL",), ("CONFIG", "GET", "*"), ("KEYS", "*"), ("SHUTDOWN",)):
            answer = dry_run("ACL", "DRYRUN", USER, *command)
            assert b"no permissions" in answer, command
        assert dry_run("ACL", "DRYRUN", USER, "LPUSH", "celery", "x") == b"OK"
    finally:
        admin.close()


def test_groups_chords_and_remote_control_work_for_the_restricted_user(
    worker: WorkerProcess, client: Celery
) -> None:
    parts = [client.signature("core.add", (i, i)) for i in range(3)]
    assert group(parts).apply_async().get(timeout=WAIT_S) == [0, 2, 4]
    body = client.signature("core.echo")
    joined = chord(parts)(body).get(timeout=WAIT_S)
    assert joined == {"args": [[0, 2, 4]], "kwargs": {}}
    replies = client.control.inspect(timeout=5, limit=1).ping() or {}
    assert list(replies.values()) == [{"ok": "pong"}]


def test_broker_use_ssl_and_redis_backend_use_ssl_dicts_turn_tls_on(
    worker: WorkerProcess, tls_redis: SecureRedis
) -> None:
    assert tls_redis.certs is not None
    tls = {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": str(tls_redis.certs.ca),
        "ssl_certfile": str(tls_redis.certs.client_cert),
        "ssl_keyfile": str(tls_redis.certs.client_key),
    }
    auth = f"{quote(USER)}:{quote(PASSWORD)}@127.0.0.1:{tls_redis.port}"
    app = Celery("tls_dicts", broker=f"redis://{auth}/0", backend=f"redis://{auth}/1")
    app.conf.broker_use_ssl = tls
    app.conf.redis_backend_use_ssl = dict(tls, ssl_cert_reqs="CERT_REQUIRED")
    try:
        assert app.send_task("core.add", (20, 22)).get(timeout=WAIT_S) == 42
    finally:
        app.close()


def test_a_server_certificate_the_client_cannot_verify_is_refused_clearly(
    tls_redis: SecureRedis,
) -> None:
    # no ssl_ca_certs: the system's CAs do not know the test CA
    assert tls_redis.certs is not None
    url = (
        f"rediss://{quote(USER)}:{quote(PASSWORD)}@127.0.0.1:{tls_redis.port}/0"
        f"?ssl_cert_reqs=required&ssl_certfile={tls_redis.certs.client_cert}"
        f"&ssl_keyfile={tls_redis.certs.client_key}"
    )
    app = Celery("tls_unverified", broker=url, backend=url)
    app.conf.broker_connection_timeout = 2.0
    app.conf.task_publish_retry = False
    try:
        with pytest.raises(BrokerError) as caught:
            app.send_task("core.add", (1, 1))
    finally:
        app.close()
    assert "certificate verify failed" in str(caught.value).lower()
    assert PASSWORD not in str(caught.value)


def test_celery_s_unknown_cert_reqs_spelling_is_a_clear_configuration_error(
    tls_redis: SecureRedis,
) -> None:
    app = Celery("tls_bad", broker=f"rediss://127.0.0.1:{tls_redis.port}/0?ssl_cert_reqs=maybe")
    with pytest.raises(Exception, match="ssl_cert_reqs='maybe' is not a certificate requirement"):
        app.send_task("core.add", (1, 1))
    app.close()
