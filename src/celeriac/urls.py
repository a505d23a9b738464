"""URL helpers shared by brokers, backends and the banner."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def safe_url(url: str | None) -> str:
    """*url* with its password replaced by ``***``, for logs and errors."""
    if not url:
        return "<none>"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{user}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""
