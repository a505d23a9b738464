"""task_routes in Celery's forms, and the order in which a queue is chosen."""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest

from celeriac import Celery
from celeriac.errors import ConfigurationError
from celeriac.routing import Router
from tests.unit.helpers import take_envelopes


def _queue(routes: Any, name: str, default: str = "celery") -> str:
    return str(Router(routes, default).route(name)["queue"])


def test_exact_name_routes_to_its_queue() -> None:
    assert _queue({"proj.add": {"queue": "math"}}, "proj.add") == "math"


def test_route_given_as_a_string_is_the_queue_name() -> None:
    assert _queue({"proj.add": "math"}, "proj.add") == "math"


def test_glob_routes_every_task_of_a_module() -> None:
    routes = {"tasks.basic_tasks.*": {"queue": "basic"}}
    assert _queue(routes, "tasks.basic_tasks.add") == "basic"


def test_glob_does_not_route_tasks_of_other_modules() -> None:
    routes = {"tasks.basic_tasks.*": {"queue": "basic"}}
    assert _queue(routes, "tasks.advanced_tasks.add") == "celery"


def test_glob_does_not_match_a_module_that_only_shares_the_prefix() -> None:
    routes = {"tasks.basic_tasks.*": {"queue": "basic"}}
    assert _queue(routes, "tasks.basic_tasks_old.add") == "celery"


def test_exact_name_wins_over_a_glob_listed_before_it() -> None:
    routes = {"tasks.*": {"queue": "wide"}, "tasks.add": {"queue": "narrow"}}
    assert _queue(routes, "tasks.add") == "narrow"


def test_compiled_regex_key_routes_matching_names() -> None:
    routes = {re.compile(r"^video\.(encode|decode)$"): {"queue": "video"}}
    assert _queue(routes, "video.encode") == "video"


def test_unrouted_task_goes_to_the_default_queue() -> None:
    assert _queue({"proj.add": "math"}, "proj.mul", default="fallback") == "fallback"


def test_route_without_a_queue_gets_the_default_queue() -> None:
    route = Router({"proj.add": {"priority": 5}}, "celery").route("proj.add")
    assert route == {"priority": 5, "queue": "celery"}


def test_list_of_routers_takes_the_first_that_answers() -> None:
    routes = [{"proj.add": "first"}, {"proj.add": "second", "proj.mul": "second"}]
    assert (_queue(routes, "proj.add"), _queue(routes, "proj.mul")) == ("first", "second")


def test_callable_router_gets_name_args_kwargs_options_and_task() -> None:
    seen: list[tuple[Any, ...]] = []

    def router(
        name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any
    ) -> dict[str, str]:
        seen.append((name, tuple(args), kwargs, options, task))
        return {"queue": f"q-{args[0]}"}

    route = Router([router], "celery").route("proj.add", (7,), {"y": 1}, {"countdown": 1})
    assert route["queue"] == "q-7"
    assert seen == [("proj.add", (7,), {"y": 1}, {"countdown": 1}, None)]


def test_callable_router_answering_none_falls_through_to_the_next() -> None:
    routes = [lambda name, *a, **kw: None, {"proj.add": "math"}]
    assert _queue(routes, "proj.add") == "math"


def test_callable_router_with_celerys_old_four_argument_form_works() -> None:
    def old_router(name: str, args: Any, kwargs: Any, options: Any) -> str:
        return "legacy"

    assert _queue(old_router, "proj.add") == "legacy"


def test_callable_router_is_asked_again_for_every_call() -> None:
    def by_first_arg(name: str, args: Any, *rest: Any, **kw: Any) -> str:
        return "even" if args[0] % 2 == 0 else "odd"

    router = Router(by_first_arg, "celery")
    assert [router.route("proj.add", (n,))["queue"] for n in (2, 3)] == ["even", "odd"]


@pytest.fixture
def routers_module() -> Iterator[str]:
    name = "unit_routers_module"
    module = types.ModuleType(name)
    module.route_task = lambda name, *a, **kw: "from_path"  # type: ignore[attr-defined]
    sys.modules[name] = module
    yield name
    del sys.modules[name]


def test_router_given_as_a_dotted_path_is_imported(routers_module: str) -> None:
    assert _queue(f"{routers_module}.route_task", "proj.add") == "from_path"


def test_route_entry_of_the_wrong_type_raises_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"'proj\.add'"):
        Router({"proj.add": 5}, "celery")


def test_task_routes_of_the_wrong_type_raises_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="int"):
        Router(5, "celery")


# precedence, seen on the queue a sent message lands on
@pytest.fixture
def routed_app(app: Celery) -> Celery:
    app.conf.task_routes = {"proj.*": {"queue": "from_routes"}}
    return app


def test_routes_pick_the_queue_of_a_sent_task(routed_app: Celery) -> None:
    routed_app.send_task("proj.add", (1, 2))
    assert len(take_envelopes(routed_app, "from_routes")) == 1


def test_unrouted_task_is_sent_to_the_celery_queue(app: Celery) -> None:
    app.send_task("proj.add", (1, 2))
    assert len(take_envelopes(app, "celery")) == 1


def test_task_default_queue_replaces_celery_for_unrouted_tasks(app: Celery) -> None:
    app.conf.task_default_queue = "mine"
    app.send_task("proj.add", (1, 2))
    assert len(take_envelopes(app, "mine")) == 1


def test_task_queue_attribute_wins_over_routes(routed_app: Celery) -> None:
    @routed_app.task(name="proj.pinned", queue="from_task")
    def pinned() -> None:
        return None

    pinned.delay()
    assert len(take_envelopes(routed_app, "from_task")) == 1


def test_explicit_queue_wins_over_the_task_queue_attribute(routed_app: Celery) -> None:
    @routed_app.task(name="proj.pinned", queue="from_task")
    def pinned() -> None:
        return None

    pinned.apply_async(queue="explicit")
    assert len(take_envelopes(routed_app, "explicit")) == 1


def test_explicit_queue_wins_over_routes(routed_app: Celery) -> None:
    routed_app.send_task("proj.add", (1, 2), queue="explicit")
    assert len(take_envelopes(routed_app, "explicit")) == 1


def test_routing_key_in_delivery_info_is_the_chosen_queue(routed_app: Celery) -> None:
    routed_app.send_task("proj.add", (1, 2))
    (envelope,) = take_envelopes(routed_app, "from_routes")
    assert envelope["properties"]["delivery_info"] == {"exchange": "", "routing_key": "from_routes"}
