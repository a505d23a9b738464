"""URL helpers shared by brokers, backends and the banner: masking the secrets in a URL (the
one place that does it) and turning a Redis URL plus Celery's SSL settings into redis-py's
connection options."""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .errors import ConfigurationError

MASK = "***"
# setting names whose values are secrets however they are written (not only inside URLs)
SECRET_NAME = re.compile(r"API|TOKEN|KEY|SECRET|PASS|PROFANITIES_LIST|SIGNATURE|DATABASE", re.I)
# query parameters that carry a secret (redis-py reads ?password=)
_SECRET_QUERY = frozenset({"password", "passwd", "pass", "token", "secret"})


def safe_url(url: str | None) -> str:
    """*url* with its password (in the user part or the query) replaced by ``***``, for
    banners, logs, errors and replies."""
    if not url:
        return "<none>"
    if ";" in url and "://" in url.partition(";")[2]:
        # Celery's list of URLs (sentinel://a;sentinel://b): each one masked
        return ";".join(safe_url(chunk) for chunk in url.split(";"))
    try:
        parts = urlsplit(url)
        password = parts.password
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError:
        return "<unparseable url>"
    secret_query = bool(parts.query) and any(
        k.lower() in _SECRET_QUERY for k, _ in parse_qsl(parts.query)
    )
    if password is None and not secret_query:
        return url  # nothing to hide: as written (urlunsplit would drop sqlite's //)
    netloc = parts.netloc
    if password is not None:
        user = parts.username or ""
        host = netloc.rpartition("@")[2]
        netloc = f"{user}:{MASK}@{host}"
    query = parts.query
    if secret_query:
        query = "&".join(
            f"{k}={MASK}" if k.lower() in _SECRET_QUERY else item
            for item in query.split("&")
            for k in [item.partition("=")[0]]
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def secrets_in(url: str | None) -> list[str]:
    """The secret strings inside *url* (its password, secret query values), to scrub from
    any text that might quote them."""
    if not url:
        return []
    if ";" in url and "://" in url.partition(";")[2]:
        return [s for chunk in url.split(";") for s in secrets_in(chunk)]
    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
        found += [v for k, v in parse_qsl(parts.query) if k.lower() in _SECRET_QUERY and v]
    except ValueError:
        return []
    return found


def scrub(text: str, secrets: list[str]) -> str:
    """*text* with every one of *secrets* replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


def masked(key: str, value: Any) -> Any:
    """A setting's value safe to show: a URL's password masked, a value under a secret-looking
    name hidden, nested mappings and lists too (``celeriac report``, ``inspect conf``)."""
    if isinstance(value, Mapping):
        return {k: masked(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(masked(key, v) for v in value)
    if isinstance(value, str) and "://" in value:
        return safe_url(value)
    if SECRET_NAME.search(key) and value not in (None, "", [], {}):
        return "********"
    return value


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


# TLS: Celery's spellings of the certificate requirement, as redis-py names them
_CERT_REQS = {
    "required": "required",
    "cert_required": "required",
    "optional": "optional",
    "cert_optional": "optional",
    "none": "none",
    "cert_none": "none",
}
_SSL_KEYS = frozenset(
    {
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ca_path",
        "ssl_ca_data",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_password",
        "ssl_check_hostname",
        "ssl_min_version",
        "ssl_ciphers",
    }
)


def _cert_reqs(value: Any, where: str) -> str:
    if isinstance(value, ssl.VerifyMode) or (isinstance(value, int) and value in (0, 1, 2)):
        return {0: "none", 1: "optional", 2: "required"}[int(value)]
    found = _CERT_REQS.get(str(value).strip().lower()) if isinstance(value, str) else None
    if found is None:
        raise ConfigurationError(
            f"{where}: ssl_cert_reqs={value!r} is not a certificate requirement; use "
            f"required, optional or none (or Celery's CERT_REQUIRED, CERT_OPTIONAL, CERT_NONE)"
        )
    return found


def redis_connection(
    url: str, use_ssl: Mapping[str, Any] | bool | None, setting: str
) -> tuple[str, dict[str, Any]]:
    """(the URL for redis-py, extra keyword arguments) for a Redis URL and Celery's SSL
    setting (*setting* names it: ``broker_use_ssl`` or ``redis_backend_use_ssl``).

    ``rediss://`` URLs take Celery's query options (``ssl_cert_reqs`` in either spelling,
    ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``); a certificate requirement left out
    is ``required``. A truthy SSL setting turns TLS on for ``redis://`` too, and its keys
    fill in what the URL does not say.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(k == "ssl_cert_reqs" for k, _ in query):
        query = [
            (k, _cert_reqs(v, f"URL {safe_url(url)}") if k == "ssl_cert_reqs" else v)
            for k, v in query
        ]
        url = urlunsplit(parts._replace(query=urlencode(query, safe="/")))
    extra: dict[str, Any] = {}
    if not use_ssl:
        return url, extra
    import redis

    extra["connection_class"] = redis.SSLConnection
    if isinstance(use_ssl, Mapping):
        unknown = sorted(str(k) for k in use_ssl if k not in _SSL_KEYS)
        if unknown:
            raise ConfigurationError(
                f"{setting} has unknown key(s) {', '.join(unknown)}; use "
                f"{', '.join(sorted(_SSL_KEYS))}"
            )
        for key, value in use_ssl.items():
            extra[key] = _cert_reqs(value, setting) if key == "ssl_cert_reqs" else value
    return url, extra
