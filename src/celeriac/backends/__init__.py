"""Result backends, chosen by URL scheme."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigurationError
from ..urls import safe_url
from .base import Backend, Meta, build_meta, decode_exception, encode_exception

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["Backend", "Meta", "build_meta", "decode_exception", "encode_exception", "make_backend"]


def make_backend(url: str, settings: Settings, client_name: str = "celeriac") -> Backend:
    """Open the result backend that *url*'s scheme names."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("redis", "rediss", "unix", "sentinel"):
        from .redis import RedisBackend

        return RedisBackend(url, settings, client_name=client_name)
    if scheme == "rpc":
        from .rpc import RpcBackend

        return RpcBackend(url, settings, client_name=client_name)
    if scheme == "memory":
        from .memory import MemoryBackend

        return MemoryBackend(url, settings)
    if scheme == "sqlite":
        from .sqlite import SqliteBackend

        return SqliteBackend(url, settings, client_name=client_name)
    raise ConfigurationError(
        f"unknown result backend URL scheme in {safe_url(url)!r}; "
        f"use redis://host:port/db, sentinel://host:26379/0;sentinel://host2:26379/0, "
        f"sqlite:///path or memory://"
    )
