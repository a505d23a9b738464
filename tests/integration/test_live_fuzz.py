"""Fuzz a live worker: 1,000 malformed messages interleaved with 1,000 good ones, LPUSHed
straight into Redis (tests/support/bad_messages.py makes them, from the wire spec, with a
seeded RNG: set LIVE_FUZZ_SEED to replay). The worker (prefork, two children) must stay up,
run every good task, and put every bad message in the dead-letter list ``celeriac.dead.celery``
with a reason, leaving nothing on the queue or in ``unacked``.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import orjson
import pytest
import redis

from celeriac import Celery
from celeriac.brokers.base import DeadLetter
from celeriac.brokers.redis import RedisBroker
from tests.support.bad_messages import MUTATIONS, bad_message, envelope
from tests.support.redis_server import RedisServer
from tests.support.workers import WorkerProcess, start_celeriac_worker

GOOD = 1000
BAD = 1000
QUEUE = "celery"
TASK = "chaos.record"

pytestmark = pytest.mark.timeout(180)


@dataclass
class Fuzzed:
    run: str
    seed: int
    bad: list[tuple[str, bytes]]  # (kind, raw), in the order pushed
    worker: WorkerProcess
    dead: list[DeadLetter]
    done: set[str]


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s}s waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def fuzzed(redis_server: RedisServer) -> Iterator[Fuzzed]:
    """Run the fuzz once (module scope) and share what came out with the tests below."""
    redis_server.client(0).flushall()
    redis_server.client(1).flushall()
    url = redis_server.url(0)
    seed = int(os.environ.get("LIVE_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\nlive fuzz seed={seed} (set LIVE_FUZZ_SEED to replay)")
    rng = random.Random(seed)
    run = f"fuzz-{uuid.uuid4().hex[:8]}"
    r = redis.Redis.from_url(url)
    worker = start_celeriac_worker(
        "chaos_tasks", url, "-P", "prefork", "-c", "2", backend_url=redis_server.url(1)
    )
    app = Celery("live_fuzz", broker=url, backend=redis_server.url(1))
    broker = app.broker
    assert isinstance(broker, RedisBroker)
    try:
        bad: list[tuple[str, bytes]] = []
        pipe = r.pipeline(transaction=False)
        for index in range(GOOD):
            good_id = f"{run}-good-{index}"
            pipe.lpush(QUEUE, orjson.dumps(envelope(good_id, TASK, [run, f"good-{index}", 0])))
            kind, raw = bad_message(rng, TASK, [run, f"bad-{index}", 0])
            bad.append((kind, raw))
            pipe.lpush(QUEUE, raw)
        pipe.execute()
        wait_until(
            lambda: r.scard(f"{run}:done") >= GOOD and broker.dead_letter_count(QUEUE) >= BAD,
            120,
            "every good task to complete and every bad message to be dead-lettered",
        )
        # and nothing is left behind: not on the queue, not held unacked
        wait_until(
            lambda: broker.queue_length(QUEUE) == 0 and r.hlen("unacked") == 0,
            10,
            "the queue and unacked to drain",
        )
        yield Fuzzed(
            run=run,
            seed=seed,
            bad=bad,
            worker=worker,
            dead=broker.dead_letters(QUEUE, limit=BAD * 2),
            done={x.decode() for x in r.smembers(f"{run}:done")},
        )
    finally:
        worker.stop()
        app.close()
        r.close()


def test_the_worker_stays_up_through_the_fuzz(fuzzed: Fuzzed) -> None:
    assert fuzzed.worker.process.poll() is None, fuzzed.worker.log()[-3000:]
    log = fuzzed.worker.log()
    assert "internal error" not in log
    assert "crashed" not in log
    assert "was killed by signal" not in log


def test_every_good_task_completes_and_no_bad_one_runs(fuzzed: Fuzzed) -> None:
    assert fuzzed.done == {f"good-{index}" for index in range(GOOD)}, f"seed={fuzzed.seed}"


def identity(raw: bytes) -> bytes:
    """The message without the ``redelivered`` marks a restore adds (a prefork child hands
    back what it prefetched when its sibling is idle, and that restore marks it)."""
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
    if not isinstance(message, dict):
        return raw
    for holder, field in (
        (message, "headers"),
        (message.get("properties"), "delivery_info"),
    ):
        part = holder.get(field) if isinstance(holder, dict) else None
        if isinstance(part, dict):
            part.pop("redelivered", None)
            if not part:
                holder.pop(field)  # type: ignore[union-attr]
    return orjson.dumps(message, option=orjson.OPT_SORT_KEYS)


def test_every_bad_message_is_in_the_dead_letter_list_with_a_reason(fuzzed: Fuzzed) -> None:
    dead = Counter(identity(letter.raw) for letter in fuzzed.dead)
    missing = Counter(kind for kind, raw in fuzzed.bad if dead[identity(raw)] == 0)
    assert not missing, f"seed={fuzzed.seed}: not dead-lettered: {dict(missing)}"
    assert len(fuzzed.dead) == BAD
    assert all(letter.reason and letter.time > 0 for letter in fuzzed.dead)


def test_the_fuzz_covered_every_kind_of_bad_message(fuzzed: Fuzzed) -> None:
    kinds = Counter(kind for kind, _ in fuzzed.bad)
    print(f"\nlive fuzz: {GOOD} good, {BAD} bad over {len(kinds)} kinds: {dict(kinds)}")
    assert set(kinds) == set(MUTATIONS)
