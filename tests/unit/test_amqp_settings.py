"""The AMQP broker reads its settings as the app does: from the config and from the
CELERIAC_* environment, without connecting."""

from __future__ import annotations

import pytest

from celeriac import Celery
from celeriac.brokers.amqp import AmqpBroker


def _broker(**conf: object) -> AmqpBroker:
    app = Celery("amqp_settings", broker="amqp://guest:guest@127.0.0.1:1//")
    app.conf.update(conf)
    broker = app.broker
    assert isinstance(broker, AmqpBroker)
    return broker


def test_rpc_results_set_in_the_environment_send_replies_to_this_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CELERIAC_RESULT_BACKEND", "rpc://")
    assert _broker().rpc_expires_ms > 0


def test_a_storing_backend_sends_no_reply_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CELERIAC_RESULT_BACKEND", raising=False)
    assert _broker(result_backend="redis://127.0.0.1:1/0").rpc_expires_ms == 0
    assert _broker(result_backend="rpc://").rpc_expires_ms > 0
