"""The flow stores give the same answers in process memory and in an SQLite file: reserved
tokens spaced by the rate, leases that lapse unless renewed, unique locks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from celeriac.flow.store_base import FlowStore
from celeriac.flow.store_memory import MemoryFlowStore
from celeriac.flow.store_sqlite import SqliteFlowStore


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FlowStore]:
    if request.param == "memory":
        yield MemoryFlowStore()
    else:
        yield SqliteFlowStore(str(tmp_path / "flow.sqlite3"))


def test_tokens_are_reserved_one_interval_apart(store: FlowStore) -> None:
    now = 1000.0
    assert store.take("b", "t1", "task", 0.2, now) == 0.0
    assert store.take("b", "t2", "task", 0.2, now) == pytest.approx(1000.2)
    assert store.take("b", "t3", "task", 0.2, now) == pytest.approx(1000.4)
    assert store.parked("task", now) == 2


def test_a_reservation_is_never_charged_twice(store: FlowStore) -> None:
    now = 1000.0
    store.take("b", "t1", "task", 1.0, now)
    at = store.take("b", "t2", "task", 1.0, now)
    assert store.take("b", "t2", "task", 1.0, now + 0.5) == at  # woken early: same time
    assert store.take("b", "t2", "task", 1.0, at) == 0.0  # its token: runs
    assert store.take("b", "t3", "task", 1.0, at) == pytest.approx(at + 1.0)


def test_buckets_are_independent(store: FlowStore) -> None:
    assert store.take("acme", "t1", "task", 1.0, 5.0) == 0.0
    assert store.take("globex", "t2", "task", 1.0, 5.0) == 0.0


def test_slots_cap_and_lapse_without_renewal(store: FlowStore) -> None:
    assert store.acquire("s", "a", "w1", 2, 5.0, 100.0)
    assert store.acquire("s", "b", "w1", 2, 5.0, 100.0)
    assert not store.acquire("s", "c", "w2", 2, 5.0, 101.0)
    store.renew(["w1"], 5.0, 104.0)
    assert not store.acquire("s", "c", "w2", 2, 5.0, 106.0)  # renewed until 109
    assert store.acquire("s", "c", "w2", 2, 5.0, 109.5)  # w1 stopped beating: lapsed


def test_release_frees_a_slot(store: FlowStore) -> None:
    assert store.acquire("s", "a", "w1", 1, 5.0, 100.0)
    assert not store.acquire("s", "b", "w1", 1, 5.0, 100.0)
    store.release("s", "a", "w1", 100.0)
    assert store.acquire("s", "b", "w1", 1, 5.0, 100.0)


def test_unique_lock_names_its_holder_until_released(store: FlowStore) -> None:
    assert store.claim_unique("k", "id1", 60.0) is None
    assert store.claim_unique("k", "id2", 60.0) == "id1"
    assert store.claim_unique("k", "id1", 60.0) is None  # its own retry goes through
    store.release_unique("k", "id1", "w1")
    assert store.claim_unique("k", "id2", 60.0) is None


def test_a_horizon_keeps_a_bucket_from_reserving_far_ahead(store: FlowStore) -> None:
    now = 1000.0
    assert store.take("w1", "t1", "task", 0.5, now, horizon_s=1.0) == 0.0
    assert store.take("w1", "t2", "task", 0.5, now, horizon_s=1.0) == pytest.approx(1000.5)
    assert store.take("w1", "t3", "task", 0.5, now, horizon_s=1.0) == pytest.approx(1001.0)
    # the next token is 1.5 s ahead: not reserved; room again at 1000.5
    assert store.take("w1", "t4", "task", 0.5, now, horizon_s=1.0) == pytest.approx(-1000.5)
    assert store.parked("task", now) == 2
