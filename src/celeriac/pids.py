"""Whether a process id names a live process on this host."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True when a process with *pid* exists here, ours or another user's (signal 0 checks
    without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, someone else's
    return True
