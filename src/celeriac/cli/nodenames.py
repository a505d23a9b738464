"""Celery's node names and the ``%`` expansions in ``--hostname``, ``--logfile`` and ``--pidfile``.

``--hostname`` (``-n``) is expanded against this machine: ``%h`` the full host name, ``%n``
its first label, ``%d`` the rest (the domain). ``--logfile`` and ``--pidfile`` are expanded
against the worker's node name (``w1@host.example.com``): ``%p`` the whole node name,
``%n`` its name part (``w1``), ``%h`` its host part, ``%d`` the host's domain, ``%i`` the
prefork child's index (0 in the manager) and ``%I`` the same with a ``-`` in front (empty
in the manager). ``%%`` is a literal ``%``.
"""

from __future__ import annotations

import re
import socket

DEFAULT_NAME = "celery"
_TOKEN = re.compile(r"%(.)")


def gethostname() -> str:
    return socket.gethostname()


def split_nodename(nodename: str) -> tuple[str, str]:
    """``w1@host`` -> ("w1", "host"); a name without ``@`` is a name on this host."""
    name, at, host = nodename.partition("@")
    if not at:
        return name, gethostname()
    return name, host


def _expand(text: str, keys: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        if key == "%":
            return "%"
        return keys.get(key, match.group(0))

    return _TOKEN.sub(one, text)


def host_format(text: str, host: str | None = None) -> str:
    """Expand ``%h``, ``%n`` and ``%d`` against this machine's host name (``--hostname``)."""
    host = host or gethostname()
    short, _, domain = host.partition(".")
    return _expand(text, {"h": host, "n": short, "d": domain})


def nodename(text: str | None = None, host: str | None = None) -> str:
    """The worker's full node name from ``--hostname``: ``celery@<host>`` by default."""
    host = host or gethostname()
    expanded = host_format(text or f"{DEFAULT_NAME}@%h", host)
    return expanded if "@" in expanded else f"{expanded}@{host}"


def node_format(text: str, node: str, index: int | None = None, keep: bool = False) -> str:
    """Expand a ``--logfile``/``--pidfile`` pattern for node *node*; *index* is the prefork
    child's index (None or 0 for the manager). With *keep*, ``%i``/``%I`` stay for the
    worker to expand (``celeriac multi`` builds a worker's command line)."""
    name, host = split_nodename(node)
    _, _, domain = host.partition(".")
    keys = {
        "p": node,
        "n": name or DEFAULT_NAME,
        "h": host,
        "d": domain,
        "i": str(index or 0),
        "I": f"-{index}" if index else "",
    }
    if keep:
        keys.update(i="%i", I="%I")
    return _expand(text, keys)
