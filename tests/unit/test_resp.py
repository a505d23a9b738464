"""The hot paths' packer writes exactly what redis-py's own packer writes."""

from __future__ import annotations

from typing import Any

import redis
from hypothesis import given
from hypothesis import strategies as st

from celeriac.resp import pack

ARGS = st.lists(
    st.one_of(st.text(), st.binary(), st.integers(min_value=-(2**63), max_value=2**63 - 1)),
    max_size=30,
)
COMMANDS = st.tuples(st.sampled_from(["EVALSHA", "LPUSH", "SET", "BLMOVE", "GET"]), ARGS).map(
    lambda named: (named[0], *named[1])
)


def redis_py(*commands: tuple[Any, ...]) -> bytes:
    conn = redis.Connection()
    return b"".join(bytes(chunk) for chunk in conn.pack_commands(commands))


@given(st.lists(COMMANDS, min_size=1, max_size=5))
def test_pack_matches_redis_py(commands: list[tuple[Any, ...]]) -> None:
    assert b"".join(pack(*commands)) == redis_py(*commands)


def test_one_command_is_the_resp_array_of_its_arguments() -> None:
    assert pack(("SET", b"k", 12, "é")) == [
        b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n$2\r\n\xc3\xa9\r\n"
    ]
