"""Start arq workers quietly: ``python -m bench.apps.arq_worker [PROCESSES]``.

arq's own CLI logs every job at INFO and has no quiet flag, and arq runs one process; this
runs ``arq.run_worker`` (its documented entry point) with logging at WARNING, in PROCESSES
forked processes for the multi-core configurations.
"""

from __future__ import annotations

import logging
import os
import sys


def main() -> None:
    processes = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    logging.basicConfig(level=logging.WARNING)
    for _ in range(processes - 1):
        if os.fork() == 0:
            break  # the child runs its own worker; the parent forks the next one
    from arq import run_worker

    from .arq_app import WorkerSettings

    run_worker(WorkerSettings)


if __name__ == "__main__":
    main()
