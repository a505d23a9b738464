"""observe.py: telling a process's own database handles from inherited ones, and addresses."""

from __future__ import annotations

import os

import pytest

from celeriac.demo import observe
from celeriac.demo.model import ProcInfo


def test_sqlite_fds_opened_after_fork_are_the_child_s_own(monkeypatch: pytest.MonkeyPatch) -> None:
    fds = {
        1: {3: "db", 4: "db-wal"},
        2: {3: "db", 4: "db-wal", 6: "db", 7: "db-wal"},
        3: {3: "db", 4: "db-wal"},
    }
    # pid 3 kept the parent's open files; pid 2 opened its own on fds 6 and 7
    shared = {(3, 3, 1, 3), (3, 4, 1, 4), (2, 3, 1, 3), (2, 4, 1, 4)}
    monkeypatch.setattr(observe, "_db_fds", lambda pid, target: fds[pid])
    monkeypatch.setattr(
        observe, "_same_open_file", lambda p1, f1, p2, f2: (p1, f1, p2, f2) in shared
    )
    procs = [ProcInfo(1, 0, "m", 1), ProcInfo(2, 1, "c", 1), ProcInfo(3, 1, "c", 1)]
    conns = observe.sqlite_connections("/tmp/db", procs)
    own = {c.pid for c in conns if c.own}
    assert own == {1, 2}
    child = [c for c in conns if c.pid == 2 and c.own]
    assert child[0].name == "db fds 6,7"
    inherited = [c for c in conns if c.pid == 3]
    assert inherited[0].own is False
    assert inherited[0].kind == "inherited"
    assert inherited[0].name == "db fds 3,4 from pid 1"


def test_client_addresses_parse_with_ipv4_and_ipv6() -> None:
    assert observe._split_addr("127.0.0.1:51234") == ("127.0.0.1", 51234)
    assert observe._split_addr("[::1]:6379") == ("::1", 6379)
    assert observe._split_addr("/tmp/redis.sock:0") == ("/tmp/redis.sock", 0)
    assert observe._split_addr("garbage") is None


def test_process_tree_of_this_process_starts_with_it() -> None:
    tree = observe.process_tree(os.getpid())
    assert tree[0].pid == os.getpid()
    assert tree[0].num_threads >= 1


def test_unknown_broker_scheme_is_reported_as_not_measurable() -> None:
    conns, source = observe.connections("memory://x", [])
    assert conns is None
    assert "memory" in source
