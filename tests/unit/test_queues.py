"""task_queues in Celery's forms (ours, kombu's objects, dicts) and how they route messages."""

from __future__ import annotations

from typing import Any

import kombu
import pytest
from kombu.transport.virtual.exchange import TopicExchange

from celeriac import Celery
from celeriac.errors import ImproperlyConfigured, QueueNotFound
from celeriac.queues import Exchange, Queue, Queues, topic_pattern
from celeriac.worker.worker import Worker
from tests.unit.helpers import take_envelopes


def _counts(app: Celery, *queues: str) -> dict[str, int]:
    return {queue: len(take_envelopes(app, queue)) for queue in queues}


# declarations
def test_our_queue_objects_are_the_declared_queues(app: Celery) -> None:
    app.conf.task_queues = (Queue("default"), Queue("videos", Exchange("media"), "media.video"))
    assert app.queues.names() == ["default", "videos"]
    videos = app.queues["videos"]
    assert (videos.exchange_name, videos.exchange_type, videos.routing_key) == (
        "media",
        "direct",
        "media.video",
    )


def test_kombu_queue_objects_are_read_by_their_attributes(app: Celery) -> None:
    app.conf.task_queues = [
        kombu.Queue(
            "jobs",
            kombu.Exchange("work", type="topic", durable=False),
            routing_key="work.#",
            queue_arguments={"x-max-priority": 10},
            durable=False,
        )
    ]
    jobs = app.queues["jobs"]
    assert (jobs.exchange_name, jobs.exchange_type, jobs.routing_key) == ("work", "topic", "work.#")
    assert jobs.priority_limit == 10
    assert jobs.durable is False
    assert isinstance(jobs, Queue)


def test_kombu_queue_given_an_exchange_name_gets_a_direct_exchange(app: Celery) -> None:
    app.conf.task_queues = [kombu.Queue("jobs", "work", routing_key="jobs")]
    assert (app.queues["jobs"].exchange_name, app.queues["jobs"].exchange_type) == (
        "work",
        "direct",
    )


def test_kombu_objects_are_not_changed_by_reading_them(app: Celery) -> None:
    declared = kombu.Queue("plain")
    app.conf.task_queues = [declared]
    assert app.queues["plain"].exchange_name == "celery"  # bound to the default exchange
    assert declared.exchange.name == ""
    assert declared.routing_key == ""


def test_our_queue_objects_are_not_changed_by_the_defaults(app: Celery) -> None:
    declared = Queue("plain")
    app.conf.task_queues = [declared]
    assert app.queues["plain"].exchange_name == "celery"
    assert (declared.exchange, declared.routing_key) == (None, "")


def test_queue_without_exchange_is_bound_to_the_default_exchange_and_key(app: Celery) -> None:
    app.conf.task_queues = [Queue("plain")]
    plain = app.queues["plain"]
    assert (plain.exchange_name, plain.routing_key) == ("celery", "celery")


def test_task_default_exchange_and_routing_key_bind_undeclared_exchanges(app: Celery) -> None:
    app.conf.task_default_exchange = "tasks"
    app.conf.task_default_routing_key = "task.default"
    app.conf.task_queues = [Queue("plain")]
    plain = app.queues["plain"]
    assert (plain.exchange_name, plain.routing_key) == ("tasks", "task.default")


def test_dict_form_with_exchange_type_and_routing_key(app: Celery) -> None:
    app.conf.task_queues = {
        "videos": {"exchange": "media", "exchange_type": "topic", "routing_key": "media.video"},
        "images": {"exchange": "media", "binding_key": "media.image"},
    }
    videos, images = app.queues["videos"], app.queues["images"]
    assert (videos.exchange_name, videos.exchange_type, videos.routing_key) == (
        "media",
        "topic",
        "media.video",
    )
    assert images.routing_key == "media.image"


def test_dict_of_queue_objects_is_accepted(app: Celery) -> None:
    app.conf.task_queues = {"a": kombu.Queue("a"), "b": Queue("b")}
    assert app.queues.names() == ["a", "b"]


def test_no_task_queues_declares_the_default_queue_alone(app: Celery) -> None:
    app.conf.task_default_queue = "work"
    assert app.queues.names() == ["work"]
    assert app.queues["work"].exchange_name == "work"


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        (["not a queue"], "give Queue objects"),
        ({"videos": 5}, "give Queue objects"),
        ("videos", "give a list of Queue objects"),
        ([Queue("ok"), object()], "give Queue objects"),
    ],
)
def test_task_queues_of_the_wrong_form_says_what_to_give(
    app: Celery, setting: Any, words: str
) -> None:
    app.conf.task_queues = setting
    with pytest.raises(ImproperlyConfigured, match=words):
        _ = app.queues


def test_exchange_of_an_unknown_type_is_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match="use one of direct, topic"):
        Exchange("media", type="cloud")


# routing by queue name
def test_route_to_a_declared_queue_publishes_on_its_own_list(app: Celery) -> None:
    app.conf.task_queues = [Queue("celery"), Queue("videos", Exchange("media"), "media.video")]
    app.conf.task_routes = {"proj.encode": {"queue": "videos"}}
    app.send_task("proj.encode")
    (envelope,) = take_envelopes(app, "videos")
    assert envelope["properties"]["delivery_info"] == {"exchange": "", "routing_key": "videos"}


def test_apply_async_takes_a_kombu_queue_object(app: Celery) -> None:
    app.send_task("proj.encode", queue=kombu.Queue("videos", kombu.Exchange("media"), "v"))
    assert _counts(app, "videos") == {"videos": 1}


def test_queue_alias_names_the_queue(app: Celery) -> None:
    app.conf.task_queues = [Queue("videos-v2", alias="videos")]
    app.send_task("proj.encode", queue="videos")
    assert _counts(app, "videos-v2") == {"videos-v2": 1}


# routing by exchange and routing key
@pytest.fixture
def media_app(app: Celery) -> Celery:
    app.conf.task_queues = [
        Queue("celery"),
        kombu.Queue("videos", kombu.Exchange("media"), routing_key="media.video"),
        kombu.Queue("images", kombu.Exchange("media"), routing_key="media.image"),
    ]
    return app


def test_direct_exchange_routes_by_equal_routing_key(media_app: Celery) -> None:
    media_app.conf.task_routes = {
        "proj.encode": {"exchange": "media", "routing_key": "media.video"}
    }
    media_app.send_task("proj.encode")
    assert _counts(media_app, "videos", "images", "celery") == {
        "videos": 1,
        "images": 0,
        "celery": 0,
    }


def test_exchange_and_routing_key_in_delivery_info_are_the_routed_ones(media_app: Celery) -> None:
    media_app.send_task("proj.encode", exchange="media", routing_key="media.image")
    (envelope,) = take_envelopes(media_app, "images")
    assert envelope["properties"]["delivery_info"] == {
        "exchange": "media",
        "routing_key": "media.image",
    }


def test_routing_key_alone_on_a_direct_queue_goes_to_that_queue_as_celery_does(
    media_app: Celery,
) -> None:
    # Celery sends through the unnamed exchange when the exchange or the key is missing
    media_app.send_task("proj.encode", queue="videos", routing_key="media.image")
    assert _counts(media_app, "videos", "images") == {"videos": 1, "images": 0}


def test_task_routing_key_attribute_is_used(media_app: Celery) -> None:
    @media_app.task(name="proj.thumb", exchange="media", routing_key="media.image")
    def thumb() -> None:
        return None

    thumb.delay()
    assert _counts(media_app, "images", "celery") == {"images": 1, "celery": 0}


def test_routing_key_no_queue_is_bound_to_raises_and_sends_nothing(media_app: Celery) -> None:
    with pytest.raises(QueueNotFound, match=r"no queue in task_queues is bound to exchange"):
        media_app.send_task("proj.encode", exchange="media", routing_key="media.audio")
    assert _counts(media_app, "videos", "images", "celery") == {
        "videos": 0,
        "images": 0,
        "celery": 0,
    }


@pytest.fixture
def topic_app(app: Celery) -> Celery:
    logs = Exchange("logs", type="topic")
    app.conf.task_queues = [
        Queue("celery"),
        Queue("errors", logs, routing_key="*.error"),
        Queue("billing", logs, routing_key="billing.#"),
    ]
    return app


def test_topic_exchange_routes_by_pattern(topic_app: Celery) -> None:
    topic_app.send_task("proj.log", exchange="logs", routing_key="web.error")
    assert _counts(topic_app, "errors", "billing") == {"errors": 1, "billing": 0}


def test_topic_exchange_copies_the_message_to_every_matching_queue(topic_app: Celery) -> None:
    result = topic_app.send_task("proj.log", exchange="logs", routing_key="billing.error")
    errors, billing = take_envelopes(topic_app, "errors"), take_envelopes(topic_app, "billing")
    assert [e["headers"]["id"] for e in errors + billing] == [result.id, result.id]


def test_topic_queue_named_in_a_route_uses_its_binding_key(topic_app: Celery) -> None:
    topic_app.conf.task_routes = {"proj.*": {"queue": "billing"}}
    topic_app.send_task("proj.charge")  # routing key billing.# matches only billing
    assert _counts(topic_app, "billing", "errors") == {"billing": 1, "errors": 0}


def test_delay_and_send_many_copy_to_matching_topic_queues(topic_app: Celery) -> None:
    @topic_app.task(name="proj.log", exchange="logs", routing_key="billing.error")
    def log(n: int) -> None:
        return None

    log.delay(1)
    topic_app.send_many("proj.log", [(2,), (3,)], exchange="logs", routing_key="billing.error")
    assert _counts(topic_app, "errors", "billing") == {"errors": 3, "billing": 3}


@pytest.mark.parametrize(
    ("binding", "key"),
    [
        ("*.error", "web.error"),
        ("*.error", "error"),
        ("*.error", "a.b.error"),
        ("billing.#", "billing.x.y"),
        ("billing.#", "billing"),
        ("#", "anything.at.all"),
        ("a.*.c", "a.b.c"),
        ("a.*.c", "a..c"),
        ("a+b.#", "a+b.c"),
        ("media.video", "media.video"),
        ("media.video", "mediaxvideo"),
    ],
)
def test_topic_patterns_match_as_kombus_topic_exchange(binding: str, key: str) -> None:
    kombu_topic = TopicExchange(channel=None)
    expected = bool(kombu_topic._match(kombu_topic.key_to_pattern(binding), key))
    assert (topic_pattern(binding).match(key) is not None) is expected


def test_fanout_exchange_is_refused_with_the_reason(app: Celery) -> None:
    app.conf.task_queues = [Queue("everyone", Exchange("broadcast", type="fanout"))]
    with pytest.raises(QueueNotFound, match="fanout exchange"):
        app.send_task("proj.tell", queue="everyone")


# task_create_missing_queues
def test_undeclared_queue_is_created_by_default(app: Celery) -> None:
    app.conf.task_queues = [Queue("celery")]
    app.send_task("proj.add", queue="elsewhere")
    assert _counts(app, "elsewhere") == {"elsewhere": 1}
    assert app.queues["elsewhere"].exchange_name == "elsewhere"


def test_missing_queue_raises_when_create_missing_queues_is_off(app: Celery) -> None:
    app.conf.task_queues = [Queue("celery")]
    app.conf.task_create_missing_queues = False
    with pytest.raises(QueueNotFound, match=r"queue 'elsewhere' is not declared in task_queues"):
        app.send_task("proj.add", queue="elsewhere")
    assert _counts(app, "elsewhere") == {"elsewhere": 0}


def test_route_to_a_missing_queue_raises_at_the_call(app: Celery) -> None:
    app.conf.task_create_missing_queues = False
    app.conf.task_routes = {"proj.add": {"queue": "math"}}

    @app.task(name="proj.add")
    def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(QueueNotFound, match="add Queue\\('math'\\) to task_queues"):
        add.delay(1, 2)


def test_declared_queue_still_works_when_create_missing_queues_is_off(app: Celery) -> None:
    app.conf.task_queues = [Queue("celery"), Queue("math")]
    app.conf.task_create_missing_queues = False
    app.send_task("proj.add", queue="math")
    assert _counts(app, "math") == {"math": 1}


# what a worker consumes
def test_worker_without_queues_consumes_every_declared_queue(app: Celery) -> None:
    app.conf.task_queues = [Queue("celery"), Queue("videos"), kombu.Queue("images")]
    assert Worker(app, pool="solo").runtime.queues == ["celery", "videos", "images"]


def test_worker_queues_name_task_queues_entries(app: Celery) -> None:
    app.conf.task_queues = [Queue("celery"), Queue("videos-v2", alias="videos")]
    assert Worker(app, pool="solo", queues=["videos"]).runtime.queues == ["videos-v2"]


def test_worker_queue_not_in_task_queues_is_refused_when_missing_queues_are_off(
    app: Celery,
) -> None:
    app.conf.task_queues = [Queue("celery")]
    app.conf.task_create_missing_queues = False
    with pytest.raises(QueueNotFound, match="'nowhere' is not declared"):
        Worker(app, pool="solo", queues=["nowhere"])


def test_banner_shows_each_queue_with_its_exchange_and_key(app: Celery) -> None:
    app.conf.task_queues = [Queue("logs", Exchange("events", type="topic"), "log.#")]
    banner = Worker(app, pool="solo").render_banner()
    assert "logs         exchange=events(topic) key=log.#" in banner


def test_queues_object_alone_resolves_destinations() -> None:
    queues = Queues([Queue("a", Exchange("x"), "k")], create_missing=False)
    target = queues.destination(exchange="x", routing_key="k")
    assert (target.queues, target.exchange, target.routing_key) == (("a",), "x", "k")


def test_direct_exchange_copies_to_every_queue_bound_with_the_same_key(app: Celery) -> None:
    app.conf.task_queues = [
        Queue("celery"),
        Queue("audit", Exchange("orders"), "order.created"),
        Queue("mailer", Exchange("orders"), "order.created"),
    ]

    @app.task(name="proj.created", exchange="orders", routing_key="order.created")
    def created() -> None:
        return None

    created.delay()
    assert _counts(app, "audit", "mailer", "celery") == {"audit": 1, "mailer": 1, "celery": 0}


def test_fanout_queue_declared_for_a_worker_does_not_slow_plain_sends(app: Celery) -> None:
    app.conf.task_queues = [Queue("celery"), Queue("everyone", Exchange("all", type="fanout"))]
    assert app.queues.fans_out is False


class ByFirstArgument:
    """Celery's older router object: route_for_task(task, args, kwargs)."""

    def route_for_task(self, task: str, args: Any = None, kwargs: Any = None) -> Any:
        if task == "proj.encode" and args and args[0] == "hd":
            return {"queue": "videos"}
        return None


def test_old_style_router_object_with_route_for_task(app: Celery) -> None:
    app.conf.task_routes = [ByFirstArgument()]
    app.send_task("proj.encode", ("hd",))
    app.send_task("proj.encode", ("sd",))
    assert _counts(app, "videos", "celery") == {"videos": 1, "celery": 1}


def test_old_style_router_class_named_by_its_path(app: Celery) -> None:
    app.conf.task_routes = (f"{__name__}.ByFirstArgument",)
    app.send_task("proj.encode", ("hd",))
    assert _counts(app, "videos") == {"videos": 1}
