"""Flow-control options: Celery's rate forms, and bad input rejected at decoration or config
load with a message naming the task and the accepted forms."""

from __future__ import annotations

import pytest

from celeriac import Celery
from celeriac.errors import ImproperlyConfigured
from celeriac.flow.limits import parse_rate, spec_for


@pytest.mark.parametrize(
    ("value", "per_s"),
    [("10/s", 10.0), ("100/m", 100 / 60), ("1000/h", 1000 / 3600), (5, 5.0), ("2.5", 2.5)],
)
def test_rate_forms_as_celery_writes_them(value: object, per_s: float) -> None:
    assert parse_rate(value) == pytest.approx(per_s)


@pytest.mark.parametrize("value", [None, "", 0, "0/s"])
def test_empty_or_zero_rate_means_no_limit(value: object) -> None:
    assert parse_rate(value) is None


@pytest.mark.parametrize("bad", ["10/x", "-1/s", "abc", "10/s/s", True])
def test_malformed_rate_rejected_at_decoration_naming_task_and_forms(
    app: Celery, bad: object
) -> None:
    with pytest.raises(ImproperlyConfigured) as caught:
        app.task(rate_limit=bad, name="proj.fetch")(lambda: None)
    assert "'proj.fetch'" in str(caught.value)
    assert '"10/s", "100/m", "1000/h"' in str(caught.value)


def test_key_template_naming_a_missing_kwarg_is_rejected(app: Celery) -> None:
    with pytest.raises(ImproperlyConfigured, match=r"names 'tenant'.*not an argument"):

        @app.task(name="proj.sync", rate_limit="1/s", rate_limit_key="{tenant}")
        def sync(item: int) -> None: ...


def test_bad_scope_and_cap_rejected(app: Celery) -> None:
    with pytest.raises(ImproperlyConfigured, match=r"rate_limit_scope of task 'proj\.a'"):
        app.task(name="proj.a", rate_limit="1/s", rate_limit_scope="planet")(lambda: None)
    with pytest.raises(ImproperlyConfigured, match=r"max_concurrency of task 'proj\.b'"):
        app.task(name="proj.b", max_concurrency=0)(lambda: None)
    with pytest.raises(ImproperlyConfigured, match=r"unique_for of task 'proj\.c'"):
        app.task(name="proj.c", unique_for=-5)(lambda: None)


def test_bad_rate_through_annotations_rejected_at_config_load(app: Celery) -> None:
    @app.task(name="proj.add")
    def add(x: int, y: int) -> int:
        return x + y

    app.conf.task_annotations = {"proj.add": {"rate_limit": "10/x"}}
    with pytest.raises(ImproperlyConfigured, match=r"rate_limit of task 'proj\.add' is '10/x'"):
        app.annotate_tasks()


def test_default_rate_limit_and_global_scope_from_settings(app: Celery) -> None:
    app.conf.task_default_rate_limit = "30/m"
    app.conf.task_rate_limit_scope = "global"

    @app.task(name="proj.ping")
    def ping() -> None: ...

    spec = spec_for(ping, app.conf)
    assert spec.rate_per_s == pytest.approx(0.5)
    assert spec.rate_scope == "global"


def test_per_worker_scope_is_the_default(app: Celery) -> None:
    @app.task(name="proj.pong", rate_limit="5/s")
    def pong() -> None: ...

    assert spec_for(pong, app.conf).rate_scope == "worker"


def test_key_template_reads_kwargs_and_positional_args_by_name(app: Celery) -> None:
    @app.task(name="proj.bill", rate_limit="2/s", rate_limit_key="{tenant}-{kind}")
    def bill(tenant: str, kind: str = "x") -> None: ...

    key = spec_for(bill, app.conf).rate_key
    assert key is not None
    assert key(("acme",), {"kind": "y"}) == "acme-y"
    assert key((), {"tenant": "globex", "kind": "z"}) == "globex-z"


def test_key_callable_gets_the_call_arguments(app: Celery) -> None:
    @app.task(name="proj.pay", rate_limit="2/s", rate_limit_key=lambda a, b=0: f"k{a + b}")
    def pay(a: int, b: int = 0) -> None: ...

    key = spec_for(pay, app.conf).rate_key
    assert key is not None
    assert key((1,), {"b": 2}) == "k3"
