"""The one place URLs are masked (urls.safe_url / masked), and Celery's TLS options turned
into redis-py's."""

from __future__ import annotations

import ssl

import pytest
import redis

from celeriac.errors import ConfigurationError
from celeriac.urls import masked, redis_connection, safe_url, scrub, secrets_in


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("redis://user:s3cret@127.0.0.1/1", "redis://user:***@127.0.0.1/1"),
        ("amqp://guest:s3cret@rabbit:5672//", "amqp://guest:***@rabbit:5672//"),
        (
            "rediss://:s3cret@[::1]:6380/0?ssl_cert_reqs=required",
            "rediss://:***@[::1]:6380/0?ssl_cert_reqs=required",
        ),
        (
            "redis://127.0.0.1:6379/0?password=s3cret&db=2",
            "redis://127.0.0.1:6379/0?password=***&db=2",
        ),
        ("sqlite:///var/lib/app/celeriac.sqlite3", "sqlite:///var/lib/app/celeriac.sqlite3"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_safe_url_masks_the_password_wherever_the_url_carries_it(url: str, shown: str) -> None:
    assert safe_url(url) == shown
    assert "s3cret" not in safe_url(url)


def test_a_url_that_cannot_be_parsed_is_not_shown_at_all() -> None:
    assert safe_url("redis://:s3cret@host:port/0") == "<unparseable url>"


def test_secrets_in_and_scrub_remove_them_from_any_text() -> None:
    url = "redis://u:pw-one@h/0?password=pw-two"
    assert secrets_in(url) == ["pw-one", "pw-two"]
    assert scrub("failed with pw-one and pw-two", secrets_in(url)) == "failed with *** and ***"


def test_masked_hides_urls_and_secret_looking_settings_nested() -> None:
    shown = masked(
        "broker_transport_options",
        {"sentinel_kwargs": {"password": "x"}, "visibility_timeout": 10, "url": "redis://:x@h/0"},
    )
    assert shown == {
        "sentinel_kwargs": {"password": "********"},
        "visibility_timeout": 10,
        "url": "redis://:***@h/0",
    }


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [("CERT_REQUIRED", "required"), ("cert_none", "none"), ("optional", "optional")],
)
def test_celery_s_ssl_cert_reqs_spellings_in_the_url(spelling: str, expected: str) -> None:
    url, extra = redis_connection(
        f"rediss://h:6380/0?ssl_cert_reqs={spelling}&ssl_ca_certs=/ca.pem", None, "broker_use_ssl"
    )
    assert url == f"rediss://h:6380/0?ssl_cert_reqs={expected}&ssl_ca_certs=/ca.pem"
    assert extra == {}


def test_broker_use_ssl_dict_turns_tls_on_with_its_options() -> None:
    url, extra = redis_connection(
        "redis://h:6380/0",
        {"ssl_cert_reqs": ssl.CERT_OPTIONAL, "ssl_ca_certs": "/ca.pem"},
        "broker_use_ssl",
    )
    assert url == "redis://h:6380/0"
    assert extra == {
        "connection_class": redis.SSLConnection,
        "ssl_cert_reqs": "optional",
        "ssl_ca_certs": "/ca.pem",
    }


def test_unknown_ssl_keys_and_values_are_configuration_errors_that_name_the_good_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown key.*ssl_ca_cert\b.*ssl_ca_certs"):
        redis_connection("redis://h/0", {"ssl_ca_cert": "/ca.pem"}, "broker_use_ssl")
    with pytest.raises(ConfigurationError, match="CERT_REQUIRED"):
        redis_connection("rediss://h/0?ssl_cert_reqs=always", None, "broker_use_ssl")
