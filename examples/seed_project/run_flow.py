"""Send the seed project's tasks to a running worker and print where each one ran.

./start_worker.sh            # in one terminal
python run_flow.py           # in another, same CELERIAC_BROKER_URL
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from local_server import start_http_server, write_sample_file
from tasks.advanced_tasks import complex_task, flaky, follow_pipeline, pipeline_add
from tasks.basic_tasks import add, multiply, where_am_i
from tasks.realworld_tasks import cpu_bound, fetch_url, hash_file, io_bound, send_email

TIMEOUT_S = 30


def show(label: str, value: object) -> None:
    print(f"{label:<34} {value}")


def main() -> None:
    print(f"client pid {os.getpid()}")
    result = add.delay(3, 5)
    show("add.delay(3, 5).get()", result.get(timeout=TIMEOUT_S))
    show("  ran in", _where(result.place))
    show("multiply.delay(4, 6).get()", multiply.delay(4, 6).get(timeout=TIMEOUT_S))

    places = [where_am_i.delay() for _ in range(4)]
    for index, pending in enumerate(places):
        show(f"where_am_i #{index}", _where(pending.get(timeout=TIMEOUT_S)))

    show("complex_task.delay(4)", complex_task.delay(4).get(timeout=TIMEOUT_S))
    show("flaky.delay(fail_times=2)", flaky.delay(2).get(timeout=TIMEOUT_S))
    steps = follow_pipeline(pipeline_add.delay(3, 5, 6), TIMEOUT_S)
    show("pipeline (3 + 5) * 6", " -> ".join(f"{s['step']}={s['value']}@{s['pid']}" for s in steps))

    server, url = start_http_server()
    try:
        show("fetch_url(loopback)", fetch_url.delay(url).get(timeout=TIMEOUT_S))
    finally:
        server.shutdown()
    with tempfile.TemporaryDirectory() as tmp:
        sample = write_sample_file(Path(tmp) / "sample.bin", size_mib=8)
        digest = hash_file.delay(str(sample)).get(timeout=TIMEOUT_S)
        show("hash_file(8 MiB)", f"{digest['sha256'][:16]}… in pid {digest['pid']}")
    burns = [cpu_bound.delay(2_000_000) for _ in range(4)]
    show("cpu_bound x4 ran in pids", sorted({b.get(timeout=TIMEOUT_S)["pid"] for b in burns}))
    show("io_bound(0.2)", io_bound.delay(0.2).get(timeout=TIMEOUT_S))
    show("send_email", send_email.delay("you@localhost", "hello").get(timeout=TIMEOUT_S))


def _where(place: dict[str, object] | None) -> str:
    if not place:
        return "unknown (the worker recorded no place)"
    child = place.get("child_index")
    who = f"child {child}" if child is not None else "main process"
    return f"{place['pool']} pool, {who}, pid {place['pid']} (ppid {place['ppid']})"


if __name__ == "__main__":
    main()
