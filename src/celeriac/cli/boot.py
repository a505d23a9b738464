"""The console script's entry point: patch for green pools before anything imports socket."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def requested_pool(argv: Sequence[str]) -> str | None:
    """The value of ``-P``/``--pool`` in *argv*, in any of click's spellings."""
    for index, arg in enumerate(argv):
        if arg in ("-P", "--pool") and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--pool="):
            return arg.split("=", 1)[1]
        if arg.startswith("-P") and len(arg) > 2 and not arg.startswith("--"):
            return arg[2:].lstrip("=")
    return None


def patch_for_pool(pool: str | None) -> None:
    if pool == "gevent":
        try:
            from gevent import monkey
        except ImportError:
            sys.stderr.write(
                "error: the gevent pool needs gevent: pip install 'celeriac[gevent]'\n"
            )
            raise SystemExit(2) from None
        monkey.patch_all()
    elif pool == "eventlet":
        try:
            import eventlet
        except ImportError:
            sys.stderr.write(
                "error: the eventlet pool needs eventlet: pip install 'celeriac[eventlet]'\n"
            )
            raise SystemExit(2) from None
        eventlet.monkey_patch()


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if "worker" in args:
        patch_for_pool(requested_pool(args))
    from .main import run

    run(args)
