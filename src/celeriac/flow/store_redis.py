"""Flow state in the Redis broker: every step one Lua script, so workers never race.

A rate bucket is a theoretical-arrival time (GCRA with a bucket of one token): each call
reserves the next free token, so N parked tasks hold N distinct times and wake one by one.
A slot is a member of a sorted set scored by its lease's expiry; each owner lists its leases
in a hash its heartbeat renews. A waiter is the exact member the broker parked in its delayed
set, so a release can move that message's due time to now.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..brokers.base import Delivery, message_priority, priority_key
from ..brokers.redis import DELAYED
from .store_base import CAP_RECHECK_S

PREFIX = "celeriac.flow."

TAKE = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local held = redis.call('HGET', KEYS[2], ARGV[3])
if held then
  if tonumber(held) <= now + 0.005 then
    redis.call('HDEL', KEYS[2], ARGV[3])
    redis.call('ZREM', KEYS[3], ARGV[3])
    return '0'
  end
  return held
end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local horizon = tonumber(ARGV[4])
if horizon >= 0 and tat - now > horizon then return string.format('%.6f', horizon - tat) end
redis.call('SET', KEYS[1], string.format('%.6f', tat + interval),
  'PX', math.ceil((tat - now + interval) * 1000) + 1000)
if tat <= now then return '0' end
local keep = math.ceil((tat - now) * 1000) + 3600000
redis.call('HSET', KEYS[2], ARGV[3], string.format('%.6f', tat))
redis.call('PEXPIRE', KEYS[2], keep)
redis.call('ZADD', KEYS[3], tat, ARGV[3])
redis.call('PEXPIRE', KEYS[3], keep)
return string.format('%.6f', tat)
"""

ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
  redis.call('HSET', KEYS[2], ARGV[5], '1')
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
  return 1
end
return 0
"""

WAIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  if redis.call('ZSCORE', KEYS[3], ARGV[3]) then redis.call('ZADD', KEYS[3], ARGV[1], ARGV[3]) end
  return 0
end
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[4])
redis.call('PEXPIRE', KEYS[4], 3600000)
return 1
"""

RELEASE = """
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[3])
while true do
  local waiter = redis.call('LPOP', KEYS[3])
  if not waiter then return 0 end
  if redis.call('ZSCORE', KEYS[4], waiter) then
    redis.call('ZADD', KEYS[4], ARGV[1], waiter)
    return 1
  end
end
"""

RENEW = """
for _, owned in ipairs(KEYS) do
  for _, field in ipairs(redis.call('HKEYS', owned)) do
    local rest = string.sub(field, 3)
    local cut = string.find(rest, '\\n', 1, true)
    local key, member = string.sub(rest, 1, cut - 1), string.sub(rest, cut + 1)
    if string.sub(field, 1, 1) == 's' then
      if redis.call('ZSCORE', key, member) then
        redis.call('ZADD', key, ARGV[1], member)
      else
        redis.call('HDEL', owned, field)
      end
    elseif redis.call('GET', key) == member then
      redis.call('PEXPIRE', key, ARGV[2])
    else
      redis.call('HDEL', owned, field)
    end
  end
  redis.call('PEXPIRE', owned, ARGV[3])
end
return 1
"""

CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
return redis.call('GET', KEYS[1])
"""

HOLD = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], '1')
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
"""

UNLOCK = """
redis.call('HDEL', KEYS[2], ARGV[2])
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0
"""


def owned_key(owner: str) -> str:
    return f"{PREFIX}owned.{owner}"


def _field(kind: str, key: str, member: str) -> str:
    return f"{kind}\n{key}\n{member}"


def delayed_member(delivery: Delivery) -> str:
    """The member the Redis broker's ``defer`` adds to its delayed set for *delivery*."""
    queue = priority_key(delivery.queue, message_priority(delivery.raw))
    return f"{queue}\n{delivery.raw.decode()}"


class RedisFlowStore:
    def __init__(self, client: Any) -> None:
        self.client = client
        self._take = client.register_script(TAKE)
        self._acquire = client.register_script(ACQUIRE)
        self._wait = client.register_script(WAIT)
        self._release = client.register_script(RELEASE)
        self._renew = client.register_script(RENEW)
        self._claim = client.register_script(CLAIM)
        self._hold = client.register_script(HOLD)
        self._unlock = client.register_script(UNLOCK)

    def take(
        self,
        bucket: str,
        ticket: str,
        task_name: str,
        interval_s: float,
        now_s: float,
        horizon_s: float | None = None,
    ) -> float:
        # a reservation is found whichever worker fetches the message when it comes due
        keys = [f"{PREFIX}tat.{bucket}", f"{PREFIX}res.{task_name}", f"{PREFIX}parked.{task_name}"]
        horizon = -1.0 if horizon_s is None else horizon_s
        answer = self._take(keys=keys, args=[repr(now_s), repr(interval_s), ticket, repr(horizon)])
        return float(answer)

    def acquire(
        self, slots: str, member: str, owner: str, limit: int, ttl_s: float, now_s: float
    ) -> bool:
        key = f"{PREFIX}slots.{slots}"
        args = [repr(now_s), limit, member, repr(now_s + ttl_s), _field("s", key, member)]
        args.append(math.ceil(ttl_s * 10_000))
        return bool(self._acquire(keys=[key, owned_key(owner)], args=args))

    def wait_for_slot(
        self, slots: str, limit: int, delivery: Delivery, task_name: str, ticket: str, now_s: float
    ) -> None:
        keys = [
            f"{PREFIX}slots.{slots}",
            f"{PREFIX}waiters.{slots}",
            DELAYED,
            f"{PREFIX}parked.{task_name}",
        ]
        until = now_s + CAP_RECHECK_S
        self._wait(keys=keys, args=[repr(now_s), limit, delayed_member(delivery), ticket, until])

    def release(self, slots: str, member: str, owner: str, now_s: float) -> bool:
        key = f"{PREFIX}slots.{slots}"
        keys = [key, owned_key(owner), f"{PREFIX}waiters.{slots}", DELAYED]
        return bool(self._release(keys=keys, args=[repr(now_s), member, _field("s", key, member)]))

    def renew(self, owners: Sequence[str], ttl_s: float, now_s: float) -> None:
        if owners:
            ttl_ms = math.ceil(ttl_s * 1000)
            keys = [owned_key(owner) for owner in owners]
            self._renew(keys=keys, args=[repr(now_s + ttl_s), ttl_ms, ttl_ms * 10])

    def claim_unique(self, lock: str, task_id: str, ttl_s: float) -> str | None:
        held = self._claim(keys=[f"{PREFIX}unique.{lock}"], args=[task_id, math.ceil(ttl_s * 1000)])
        if not held:
            return None
        return held.decode() if isinstance(held, bytes) else str(held)

    def hold_unique(self, lock: str, task_id: str, owner: str, ttl_s: float) -> None:
        key = f"{PREFIX}unique.{lock}"
        ttl_ms = math.ceil(ttl_s * 1000)
        args = [task_id, ttl_ms, _field("u", key, task_id), ttl_ms * 10]
        self._hold(keys=[key, owned_key(owner)], args=args)

    def release_unique(self, lock: str, task_id: str, owner: str) -> None:
        key = f"{PREFIX}unique.{lock}"
        self._unlock(keys=[key, owned_key(owner)], args=[task_id, _field("u", key, task_id)])

    def parked(self, task_name: str, now_s: float) -> int:
        return int(self.client.zcount(f"{PREFIX}parked.{task_name}", repr(now_s - 1.0), "+inf"))

    def unparked(self, task_name: str, ticket: str) -> None:
        self.client.zrem(f"{PREFIX}parked.{task_name}", ticket)
