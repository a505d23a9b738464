"""Redis commands packed for the wire by hiredis, one C call each.

The hot paths (fetch, ack, the blocking move, the deferred result store, the result wait)
write to a redis-py connection directly. redis-py's own packer walks every argument in
Python before handing them to the same hiredis call, which cost the worker more than a
tenth of its time per task; these paths only pass str, bytes and int.
"""

from __future__ import annotations

from typing import Any

import hiredis


def pack(*commands: tuple[Any, ...]) -> list[bytes]:
    """The wire form of *commands*, in order, as ``send_packed_command`` takes it (a list
    of chunks: here one)."""
    if len(commands) == 1:
        return [hiredis.pack_command(commands[0])]
    return [b"".join([hiredis.pack_command(command) for command in commands])]
