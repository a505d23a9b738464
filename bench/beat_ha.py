"""The beat high-availability run of issue 17: three ``celeriac beat`` processes with an
every-second entry for 30 s, one SIGKILLed mid-run, a real worker running what they send.
Prints the counts: slots, sends, runs, duplicates.

    .venv/bin/python -m bench.beat_ha                     # Redis and SQLite, 30 s each
    .venv/bin/python -m bench.beat_ha --broker redis --seconds 10

It starts its own redis-server on a free loopback port and stops it, and every process it
starts, by PID at the end. The run itself is tests/support/beat_ha.py, the one the CI test
runs for a few seconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.beat_ha import run_beat_ha  # noqa: E402
from tests.support.redis_server import cleanup, start_redis  # noqa: E402


def _check(name: str, report_text: str, ok: bool) -> bool:
    print(f"{name}: {report_text} -> {'OK' if ok else 'FAILED'}", flush=True)
    return ok


def run(broker: str, seconds: float, beats: int) -> bool:
    with tempfile.TemporaryDirectory(prefix="beat-ha-") as tmp:
        workdir = Path(tmp)
        if broker == "redis":
            server = start_redis()
            try:
                report = run_beat_ha(
                    server.url(0),
                    server.url(1),
                    workdir,
                    window_s=seconds,
                    kill_after_s=seconds / 2,
                    beats=beats,
                )
            finally:
                cleanup(server)
        else:
            url = f"sqlite:///{workdir / 'broker.sqlite3'}"
            report = run_beat_ha(
                url, url, workdir, window_s=seconds, kill_after_s=seconds / 2, beats=beats
            )
    ids = report.expected_ids()
    ok = all(report.sends[i] == 1 and report.runs[i] == 1 for i in ids)
    ok = ok and max(report.sends.values()) == 1 and max(report.runs.values()) == 1
    return _check(broker, report.summary(), ok)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=["redis", "sqlite", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=30.0, help="the window every beat covers")
    parser.add_argument("--beats", type=int, default=3)
    options = parser.parse_args()
    brokers = ["redis", "sqlite"] if options.broker == "both" else [options.broker]
    results = [run(broker, options.seconds, options.beats) for broker in brokers]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
