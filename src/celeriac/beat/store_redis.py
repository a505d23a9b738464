"""The beat store on Redis: four keys beside the broker's, each operation one atomic call.

``celeriac.beat.last`` (hash: entry -> last slot), ``celeriac.beat.pending`` (hash:
"entry\\nslot" -> "lease_until owner"), ``celeriac.beat.entries`` (hash: entry -> JSON) and
``celeriac.beat.paused`` (set). Claims and take-overs are Lua scripts, so a compare-and-set
and its pending record happen together or not at all.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.exceptions

from ..config import Settings
from ..errors import BrokerError
from ..redis_connect import redis_client
from ..urls import safe_url
from .store import Pending, decode, pending_from_text, pending_text

LAST = "celeriac.beat.last"
PENDING = "celeriac.beat.pending"
ENTRIES = "celeriac.beat.entries"
PAUSED = "celeriac.beat.paused"

# KEYS: last, pending; ARGV: name, expected ('' for none), slot, pending text ('' for none)
CLAIM = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '' then
  if current then return 0 end
elseif current ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[1] .. '\\n' .. ARGV[3], ARGV[4])
end
return 1
"""

# KEYS: pending; ARGV: field, now, new pending text
TAKE_OVER = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return 0 end
local lease = tonumber(string.match(current, '^[^ ]+'))
if lease >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""

ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, ConnectionError)


class RedisBeatStore:
    def __init__(self, url: str, settings: Settings | None = None) -> None:
        self.url = url
        try:  # as the broker connects: sentinel:// lists, broker_use_ssl for TLS
            self._client = redis_client(
                url,
                settings if settings is not None else Settings(),
                "broker",
                client_name="celeriac.beat",
                socket_connect_timeout=4.0,
            )
        except ValueError as exc:
            raise BrokerError(f"invalid Redis broker URL {safe_url(url)!r}: {exc}") from exc
        self._claim = self._client.register_script(CLAIM)
        self._take_over = self._client.register_script(TAKE_OVER)

    def _call(self, action: Any, *args: Any) -> Any:
        try:
            return action(*args)
        except ERRORS as exc:
            raise BrokerError(
                f"beat lost the broker at {safe_url(self.url)}: {exc}; it retries each tick"
            ) from exc

    def last_slots(self) -> dict[str, str]:
        return decode(self._call(self._client.hgetall, LAST))

    def claim(self, name: str, expected: str | None, slot: str, pending: Pending | None) -> bool:
        keys = [LAST, PENDING]
        text = pending_text(pending) if pending is not None else ""
        return bool(self._call(self._claim, keys, [name, expected or "", slot, text]))

    def confirm(self, name: str, slot: str) -> None:
        self._call(self._client.hdel, PENDING, f"{name}\n{slot}")

    def expired(self, now_s: float) -> list[Pending]:
        found = []
        for field, text in decode(self._call(self._client.hgetall, PENDING)).items():
            name, _, slot = field.partition("\n")
            claim = pending_from_text(name, slot, text)
            if claim.lease_until_s < now_s:
                found.append(claim)
        return found

    def take_over(self, claim: Pending, now_s: float) -> bool:
        args = [f"{claim.name}\n{claim.slot}", f"{now_s:.6f}", pending_text(claim)]
        return bool(self._call(self._take_over, [PENDING], args))

    def entries(self) -> dict[str, str]:
        return decode(self._call(self._client.hgetall, ENTRIES))

    def put_entry(self, name: str, definition: str) -> None:
        self._call(self._client.hset, ENTRIES, name, definition)

    def delete_entry(self, name: str) -> bool:
        return bool(self._call(self._client.hdel, ENTRIES, name))

    def paused(self) -> set[str]:
        return {name.decode() for name in self._call(self._client.smembers, PAUSED)}

    def set_paused(self, name: str, is_paused: bool) -> None:
        action = self._client.sadd if is_paused else self._client.srem
        self._call(action, PAUSED, name)

    def forget(self, name: str) -> None:
        self._call(self._client.hdel, LAST, name)

    def close(self) -> None:
        self._client.close()
