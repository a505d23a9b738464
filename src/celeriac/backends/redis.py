"""The Redis result backend: ``celery-task-meta-<id>`` keys and their pub/sub channel, saved
groups (``celery-taskset-meta-<gid>``) and the chord join on Celery's counter keys.

Chord keys, as Celery 5.7 writes them (shared/spec/celery-wire-protocol.md §8):
``<gid>.s`` size (set by the client), ``.j`` finished parts (sorted set by group_index),
``.t`` parts added at runtime, ``.d`` dedupe markers, ``.c`` the claim marker. A chord
started by a Celery 5.6 client (``.s``/``.j``/``.t`` only) completes the same way.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Sequence
from typing import Any

import orjson
import redis
import redis.exceptions

from .. import states
from ..config import Settings
from ..errors import BackendError, TimeoutError
from ..redis_connect import failover_wait_s, redis_client
from ..resp import pack
from ..serialization import dumps_json
from ..urls import safe_url, scrub, secrets_in
from .base import (
    CHORD_CLAIM_S,
    CHORD_DONE_S,
    GROUP_KEY_PREFIX,
    ChordClaim,
    ChordPart,
    Meta,
    chord_expires_s,
    chord_ordered,
    decode_meta,
)
from .redis_wait import Resp3Unavailable, ResultWaiter

logger = logging.getLogger(__name__)

KEY_PREFIX = "celery-task-meta-"
# builtins.ConnectionError, not OSError: our own TimeoutError is an OSError too
CONNECTION_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
)


# Record one header part (once per task id and index), refresh the counters' expiry, and
# claim the right to finish the chord when the count is complete, or when this part failed
# (the body fails at once). Returns {count, extra, size, claimed}; count -1 = already done.
PART_RETURN_LUA = """
local jkey, tkey, skey, dkey, gkey, ckey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local marker = redis.call('GET', ckey)
if marker == 'done' then
    return {-1, false, false, 0}
end
local ordered = ARGV[3] == '1'
if redis.call('SADD', dkey, ARGV[1] .. ':' .. ARGV[4]) == 1 then
    if ordered then
        redis.call('ZADD', jkey, ARGV[4], ARGV[2])
    else
        redis.call('RPUSH', jkey, ARGV[2])
    end
end
local count
if ordered then
    count = redis.call('ZCARD', jkey)
else
    count = redis.call('LLEN', jkey)
end
local ttl = tonumber(ARGV[5])
if ttl > 0 then
    for _, key in ipairs({jkey, tkey, skey, dkey}) do
        redis.call('EXPIRE', key, ttl)
    end
    if marker == 'failed' then
        redis.call('EXPIRE', ckey, ttl)
    end
    if tonumber(ARGV[6]) > 0 then
        redis.call('EXPIRE', gkey, ARGV[6])
    end
end
local extra = redis.call('GET', tkey)
local size = redis.call('GET', skey)
local complete = size and count == tonumber(size) + tonumber(extra or 0)
if marker == 'failed' then
    if complete then
        redis.call('DEL', jkey, tkey, skey, dkey)
        redis.call('SET', ckey, 'done', 'EX', ARGV[10])
    end
    return {count, extra, size, 0}
end
local claimed = 0
if complete or (ARGV[9] == '1' and size) then
    if redis.call('SET', ckey, ARGV[8], 'NX', 'EX', ARGV[7]) then
        claimed = 1
    end
end
return {count, extra, size, claimed}
"""

# Release a claim this worker holds: delete the counters and leave "done" for late
# duplicates; or, when the body failed before every part was in, leave "failed" so the
# last part cleans up (it checks here too, in case that part came in meanwhile).
FINISH_LUA = """
local ckey, jkey, tkey, skey, dkey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
if redis.call('GET', ckey) ~= ARGV[1] then
    return 0
end
if ARGV[2] == '1' then
    local count
    if ARGV[5] == '1' then
        count = redis.call('ZCARD', jkey)
    else
        count = redis.call('LLEN', jkey)
    end
    local size = redis.call('GET', skey)
    local extra = redis.call('GET', tkey)
    if not (size and count == tonumber(size) + tonumber(extra or 0)) then
        if tonumber(ARGV[4]) > 0 then
            redis.call('SET', ckey, 'failed', 'EX', ARGV[4])
        else
            redis.call('SET', ckey, 'failed')
        end
        return 1
    end
end
redis.call('DEL', jkey, tkey, skey, dkey)
redis.call('SET', ckey, 'done', 'EX', ARGV[3])
return 1
"""


def meta_key(task_id: str) -> str:
    return KEY_PREFIX + task_id


def group_key(group_id: str, suffix: str = "") -> str:
    """``celery-taskset-meta-<gid>`` and its chord counters (``.s``, ``.j``, ...)."""
    return f"{GROUP_KEY_PREFIX}{group_id}{suffix}"


class RedisBackend:
    def __init__(self, url: str, settings: Settings, client_name: str = "celeriac") -> None:
        self.url = url
        try:
            # a plain Redis URL or Celery's sentinel:// list (redis_connect)
            self._client = redis_client(
                url,
                settings,
                "backend",
                client_name=f"{client_name}:results",
                socket_connect_timeout=float(settings.broker_connection_timeout or 4.0),
                socket_keepalive=True,
                health_check_interval=30,
            )
        except ValueError as exc:
            reason = scrub(str(exc), secrets_in(url))
            raise BackendError(
                f"invalid Redis result backend URL {safe_url(url)!r}: {reason}"
            ) from None
        self._local = threading.local()
        self._waiters: weakref.WeakSet[ResultWaiter] = weakref.WeakSet()  # every thread's
        self._client_name = client_name
        self._no_resp3 = False  # set when Redis refuses RESP3 (older than 6.0)
        self._chord_expires_s = chord_expires_s(settings)
        result_expires: Any = settings.get("result_expires") or 0
        if hasattr(result_expires, "total_seconds"):
            result_expires = result_expires.total_seconds()
        self._result_expires_s = float(result_expires)
        self._chord_ordered = chord_ordered(settings)
        self._part_script = self._client.register_script(PART_RETURN_LUA)
        self._finish_script = self._client.register_script(FINISH_LUA)
        self._deferred_lock = threading.Lock()
        self._deferred_conn: Any = None
        self._deferred_pid = os.getpid()
        self._deferred_ids: list[str] = []
        # what each deferred store wrote, to write again when its answer is lost
        self._deferred_metas: dict[str, tuple[Meta, float | None]] = {}
        # how long a store keeps trying while the master is away (a Sentinel failover)
        self._failover_s = failover_wait_s(self._client)

    @property
    def client(self) -> redis.Redis:
        return self._client

    def store(self, task_id: str, meta: Meta, expires_s: float | None) -> None:
        payload = dumps_json(meta)
        key = meta_key(task_id)
        # behind Sentinel a lost master comes back as another server within seconds: keep
        # trying that long (each attempt asks the sentinels); a plain Redis gets one try
        give_up_at = time.monotonic() + self._failover_s
        pause_s = 0.1
        while True:
            try:
                pipe = self._client.pipeline(transaction=True)
                if expires_s:
                    pipe.set(key, payload, px=max(1, int(expires_s * 1000)))
                else:
                    pipe.set(key, payload)
                pipe.publish(key, payload)
                pipe.execute()
                return
            except CONNECTION_ERRORS as exc:
                if time.monotonic() + pause_s > give_up_at:
                    raise BackendError(
                        f"cannot store the result of {task_id} at {safe_url(self.url)}: {exc}"
                    ) from exc
                time.sleep(pause_s)
                pause_s = min(1.0, pause_s * 2)

    def store_deferred(self, task_id: str, meta: Meta, expires_s: float | None) -> None:
        """``store`` without waiting for Redis's answer: the commands go out now (the result
        is visible and published as soon as Redis reads them) and the answer is read by
        ``confirm_stored``, which the worker's one-at-a-time consumers call before their
        next fetch carries any ack. They run the next task instead of waiting a round trip."""
        payload = dumps_json(meta)
        key = meta_key(task_id)
        set_cmd: tuple[Any, ...] = ("SET", key, payload)
        if expires_s:
            set_cmd = (*set_cmd, "PX", max(1, int(expires_s * 1000)))
        with self._deferred_lock:
            try:
                conn = self._deferred_conn
                if conn is None or self._deferred_pid != os.getpid():
                    # checked out of the pool for good: closing the client closes it too
                    conn = self._deferred_conn = self._client.connection_pool.get_connection()
                    self._deferred_pid = os.getpid()
                    self._deferred_ids = []
                    self._deferred_metas = {}
                conn.send_packed_command(
                    pack(("MULTI",), set_cmd, ("PUBLISH", key, payload), ("EXEC",))
                )
            except (*CONNECTION_ERRORS, OSError):
                # written again on a fresh connection, with the earlier deferred stores whose
                # answers that connection still owed
                ids, metas = self._deferred_ids, self._deferred_metas
                self._drop_deferred()
                self._store_again([*ids, task_id], {**metas, task_id: (meta, expires_s)})
                return
            self._deferred_ids.append(task_id)
            self._deferred_metas[task_id] = (meta, expires_s)

    def confirm_stored(self) -> None:
        """Read the answers to every deferred store; BackendError names those that failed."""
        with self._deferred_lock:
            ids, self._deferred_ids = self._deferred_ids, []
            metas, self._deferred_metas = self._deferred_metas, {}
            conn = self._deferred_conn
            if not ids or conn is None:
                return
            failed: list[str] = []
            try:
                for task_id in ids:
                    if not _read_transaction(conn, 4):  # MULTI, SET, PUBLISH, EXEC
                        failed.append(task_id)
            except (*CONNECTION_ERRORS, OSError):
                # the answers are lost (a Redis restart, a Sentinel failover): the results
                # may not be there, so they are written again (the same value: harmless)
                self._drop_deferred()
                self._store_again(ids, metas)
        if failed:
            raise BackendError(f"Redis refused to store the results of {', '.join(failed)}")

    def _store_again(self, ids: list[str], metas: dict[str, tuple[Meta, float | None]]) -> None:
        """Write the results of *ids* again on a fresh connection; BackendError names those
        that could not be written."""
        failed = []
        for task_id in ids:
            meta, expires_s = metas.get(task_id, (None, None))
            if meta is None:
                continue
            try:
                self.store(task_id, meta, expires_s)
            except BackendError as exc:
                failed.append((task_id, exc))
        if failed:
            raise BackendError(
                f"results of {len(failed)} task(s) may not be stored at {safe_url(self.url)} "
                f"({', '.join(t for t, _ in failed)}): {failed[-1][1]}"
            )

    def _drop_deferred(self) -> None:
        conn, self._deferred_conn = self._deferred_conn, None
        self._deferred_ids = []
        self._deferred_metas = {}
        if conn is not None:
            conn.disconnect()

    def get_meta(self, task_id: str) -> Meta | None:
        try:
            data = self._client.get(meta_key(task_id))
        except CONNECTION_ERRORS as exc:
            raise BackendError(f"cannot read results at {safe_url(self.url)}: {exc}") from exc
        return _decode(data) if data is not None else None

    def get_many(self, task_ids: Sequence[str]) -> dict[str, Meta]:
        """The stored meta of each id that has one (one MGET)."""
        if not task_ids:
            return {}
        try:
            values = self._client.mget([meta_key(task_id) for task_id in task_ids])
        except CONNECTION_ERRORS as exc:
            raise BackendError(f"cannot read results at {safe_url(self.url)}: {exc}") from exc
        return {
            tid: _decode(data)
            for tid, data in zip(task_ids, values, strict=True)
            if data is not None
        }

    def forget(self, task_id: str) -> None:
        self._client.delete(meta_key(task_id))

    # groups
    def save_group(self, group_id: str, meta: Meta, expires_s: float | None) -> None:
        """``GroupResult.save()``: SET (with expiry) and PUBLISH in one transaction."""
        payload = dumps_json(meta)
        key = group_key(group_id)
        pipe = self._client.pipeline(transaction=True)
        if expires_s:
            pipe.set(key, payload, px=max(1, int(expires_s * 1000)))
        else:
            pipe.set(key, payload)
        pipe.publish(key, payload)
        self._execute(pipe, f"save group {group_id}")

    def get_group(self, group_id: str) -> Meta | None:
        try:
            data = self._client.get(group_key(group_id))
        except CONNECTION_ERRORS as exc:
            raise BackendError(f"cannot read results at {safe_url(self.url)}: {exc}") from exc
        return _decode(data) if data is not None else None

    def delete_group(self, group_id: str) -> None:
        self._client.delete(group_key(group_id))

    # chords
    def set_chord_size(self, group_id: str, size: int) -> None:
        """What a Celery 5.7 client does before sending the header: ``DEL .c``, then
        ``SET .s <size> EX <chord_expires>``."""
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(group_key(group_id, ".c"))
        ttl = self._chord_expires_s
        pipe.set(group_key(group_id, ".s"), int(size), ex=max(1, int(ttl)) if ttl else None)
        self._execute(pipe, f"start chord {group_id}")

    def add_to_chord(self, group_id: str) -> None:
        """Celery's ``INCR .t``: one more part than the size set at the start."""
        pipe = self._client.pipeline(transaction=True)
        pipe.incr(group_key(group_id, ".t"))
        ttl = self._chord_expires_s
        if ttl:
            pipe.expire(group_key(group_id, ".t"), max(1, int(ttl)))
        self._execute(pipe, f"add a part to chord {group_id}")

    def on_chord_part_return(self, part: ChordPart) -> ChordClaim | None:
        gid = part.group_id
        token = uuid.uuid4().hex
        score = "+inf" if part.group_index is None else str(int(part.group_index))
        ttl = int(self._chord_expires_s or 0)
        group_ttl = int(max(ttl, self._result_expires_s)) if ttl and self._result_expires_s else 0
        keys = [group_key(gid, suffix) for suffix in (".j", ".t", ".s", ".d", "", ".c")]
        args: list[str | int | bytes] = [
            part.task_id,
            dumps_json(part.entry()),
            "1" if self._chord_ordered else "0",
            score,
            ttl,
            group_ttl,
            CHORD_CLAIM_S,
            token,
            "1" if part.failed else "0",
            CHORD_DONE_S,
        ]
        try:
            count, extra, size, claimed = self._part_script(keys=keys, args=args)
        except CONNECTION_ERRORS as exc:
            raise BackendError(
                f"cannot record chord part {part.task_id} of {gid} at {safe_url(self.url)}: {exc}"
            ) from exc
        if int(count) < 0 or not int(claimed):
            return None
        complete = size is not None and int(count) == int(size) + int(extra or 0)
        return ChordClaim(gid, token, complete, self._read_parts(gid) if complete else [])

    def _read_parts(self, group_id: str) -> list[ChordPart]:
        key = group_key(group_id, ".j")
        if self._chord_ordered:
            entries = self._client.zrange(key, 0, -1)
        else:
            entries = self._client.lrange(key, 0, -1)
        return [
            _decode_part(group_id, entry) for entry in entries if isinstance(entry, (bytes, str))
        ]

    def finish_chord(self, claim: ChordClaim, failed: bool) -> None:
        gid = claim.group_id
        keys = [group_key(gid, suffix) for suffix in (".c", ".j", ".t", ".s", ".d")]
        args: list[str | int] = [
            claim.token,
            "1" if failed and not claim.complete else "0",
            CHORD_DONE_S,
            int(self._chord_expires_s or 0),
            "1" if self._chord_ordered else "0",
        ]
        try:
            released = self._finish_script(keys=keys, args=args)
        except CONNECTION_ERRORS as exc:
            raise BackendError(
                f"cannot release chord {gid} at {safe_url(self.url)}: {exc}"
            ) from exc
        if not int(released):
            logger.warning(
                "chord %s: the claim expired before it was released; its counters stay until "
                "they expire",
                gid,
            )

    def _execute(self, pipe: Any, what: str) -> None:
        try:
            pipe.execute()
        except CONNECTION_ERRORS as exc:
            raise BackendError(f"cannot {what} at {safe_url(self.url)}: {exc}") from exc

    def wait_for(self, task_id: str, timeout_s: float | None, interval_s: float = 0.5) -> Meta:
        """Wait for a ready state: subscribe, then read the key (closing the race), then
        sleep on the channel. The key is read again every few seconds and after a reconnect,
        so a lost notification can delay the answer but never hang it."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        recheck_s = max(1.0, interval_s)
        while True:
            try:
                waiter = self._result_waiter()
                if waiter is not None:  # RESP3: subscribe and read in one round trip
                    return waiter.wait(
                        meta_key(task_id), lambda: _remaining(deadline, task_id), recheck_s
                    )
                return self._wait_subscribed(task_id, deadline, recheck_s)
            except CONNECTION_ERRORS as exc:
                logger.warning("result backend %s lost (%s); reconnecting", safe_url(self.url), exc)
                self._reset_waiters()
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"result of {task_id} not ready: the backend at {safe_url(self.url)} "
                        f"is unreachable ({exc})"
                    ) from exc
                time.sleep(min(0.5, max(0.0, (deadline or 0) - time.monotonic()) or 0.5))

    def _wait_subscribed(self, task_id: str, deadline: float | None, recheck_s: float) -> Meta:
        key = meta_key(task_id)
        pubsub = self._pubsub()
        pubsub.subscribe(key)
        try:
            self._await_subscribed(pubsub, key, deadline)
            while True:
                data = self._client.get(key)
                if data is not None:
                    meta = _decode(data)
                    if meta.get("status") in states.READY_STATES:
                        return meta
                next_check = time.monotonic() + recheck_s
                while time.monotonic() < next_check:
                    remaining = _remaining(deadline, task_id)
                    message = pubsub.get_message(timeout=min(remaining, recheck_s))
                    if message and message.get("type") == "message":
                        meta = _decode(message["data"])
                        if meta.get("status") in states.READY_STATES:
                            return meta
        finally:
            try:
                pubsub.unsubscribe(key)
            except CONNECTION_ERRORS:
                self._reset_waiters()

    def _await_subscribed(self, pubsub: Any, key: str, deadline: float | None) -> None:
        while True:
            message = pubsub.get_message(timeout=min(_remaining(deadline, key), 1.0))
            if message and message.get("type") == "subscribe":
                channel = message.get("channel")
                if channel in (key, key.encode()):
                    return

    def _pubsub(self) -> Any:
        pubsub = getattr(self._local, "pubsub", None)
        if pubsub is None:
            pubsub = self._client.pubsub(ignore_subscribe_messages=False)
            self._local.pubsub = pubsub
        return pubsub

    def _result_waiter(self) -> ResultWaiter | None:
        """This thread's RESP3 waiting connection; None where Redis has no RESP3."""
        if self._no_resp3:
            return None
        waiter: ResultWaiter | None = getattr(self._local, "waiter", None)
        if waiter is None or waiter.pid != os.getpid():  # (a forked child opens its own)
            try:
                waiter = ResultWaiter(self._client, self._client_name)
            except Resp3Unavailable as exc:
                logger.info("waiting for results over RESP2: %s", exc)
                self._no_resp3 = True
                return None
            self._local.waiter = waiter
            self._waiters.add(waiter)
        return waiter

    def release(self, task_id: str) -> None:
        """An AsyncResult of *task_id* was garbage-collected: no waiter stays subscribed to
        a result nobody can read any more (``AsyncResult.__del__``)."""
        for waiter in list(self._waiters):  # one per thread that waited
            unfinished = waiter.unfinished
            if unfinished is not None and unfinished.endswith(task_id):
                waiter.release(meta_key(task_id))

    def _reset_waiters(self) -> None:
        """Close this thread's waiting connections (RESP3 and RESP2); the next wait opens
        new ones."""
        for name in ("waiter", "pubsub"):
            conn = getattr(self._local, name, None)
            setattr(self._local, name, None)
            if conn is not None:
                try:
                    conn.close()
                except CONNECTION_ERRORS:
                    logger.debug("error closing the result %s", name, exc_info=True)

    def close(self) -> None:
        self._reset_waiters()
        if self._deferred_pid == os.getpid():
            with self._deferred_lock:
                self._drop_deferred()
        self._client.close()


def _read_transaction(conn: Any, count: int) -> bool:
    """Read *count* answers of a MULTI ... EXEC sent earlier; False if any was an error."""
    ok = True
    for _ in range(count):
        try:
            reply = conn.read_response(disable_decoding=True)
        except redis.exceptions.ResponseError:
            ok = False
            continue
        if isinstance(reply, list) and any(isinstance(item, Exception) for item in reply):
            ok = False
    return ok


def _remaining(deadline: float | None, task_id: str) -> float:
    if deadline is None:
        return 3600.0
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError(
            f"result of {task_id} not ready in time; is a worker consuming its queue? "
            f"(`celeriac inspect` or the worker log tells)"
        )
    return remaining


def _decode_part(group_id: str, entry: bytes | str) -> ChordPart:
    try:
        _, task_id, state, result = orjson.loads(entry)
    except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
        raise BackendError(
            f"chord {group_id} holds a part that is not [1, id, state, result]"
        ) from exc
    return ChordPart(group_id, str(task_id), None, str(state), result)


_decode = decode_meta
