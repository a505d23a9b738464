"""Celery's ``event_*`` settings: known (no "unknown setting" warning), Celery's defaults,
and ``event_exchange`` names the channels a worker's events go to."""

from __future__ import annotations

import time
import warnings

import celery.app.defaults  # type: ignore[import-untyped]
import orjson
import redis

from celeriac import Celery
from celeriac.config import Settings
from celeriac.events.dispatcher import EventDispatcher

EVENT_SETTINGS = (
    "event_exchange",
    "event_queue_prefix",
    "event_queue_ttl",
    "event_queue_expires",
    "event_queue_exclusive",
    "event_queue_durable",
    "event_serializer",
)


def test_event_settings_have_celerys_defaults() -> None:
    conf = Settings()
    for name in EVENT_SETTINGS:
        assert conf[name] == celery.app.defaults.DEFAULTS[name], name


def test_setting_event_settings_warns_nothing() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        app = Celery(
            "ev",
            broker="memory://event-settings",
            event_exchange="myevents",
            event_queue_ttl=2.0,
            event_queue_expires=30.0,
            event_queue_prefix="myev",
            event_serializer="json",
        )
        app.conf.event_queue_durable = True
    assert app.conf.event_exchange == "myevents"


def test_worker_events_go_to_the_configured_exchange(redis_url: str) -> None:
    app = Celery("ev", broker=redis_url, event_exchange="myevents")
    listener = redis.Redis.from_url(redis_url)
    pubsub = listener.pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe("/0.*")  # every exchange: the test sees where the event went
    try:
        EventDispatcher(app, "w1@here").send("worker-heartbeat", active=0)
        deadline = time.monotonic() + 5
        message = None
        while message is None and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.2)
        assert message is not None, "no event published within 5 s"
        assert message["channel"] == b"/0.myevents/worker.heartbeat"
        envelope = orjson.loads(message["data"])
        assert envelope["properties"]["delivery_info"]["exchange"] == "myevents"
    finally:
        pubsub.close()
        listener.close()
        app.close()
