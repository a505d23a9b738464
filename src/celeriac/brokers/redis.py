"""The Redis broker: Celery 5 / kombu's Redis layout (lists per queue and priority,
``unacked`` hash and ``unacked_index`` zset), with an atomic fetch.

kombu pops with BRPOP and records the message in ``unacked`` afterwards, so a worker killed
in between loses it. Here one Lua script pops and records together. To wait for work without
polling and without popping, an idle consumer reads the queue lengths on a connection with
client-side tracking on, and sleeps until Redis says one of those keys changed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import select
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import orjson
import redis
import redis.exceptions

from ..config import Settings
from ..errors import BrokerError
from ..protocol import mark_redelivered
from ..redis_connect import redis_client
from ..resp import pack
from ..urls import safe_url, scrub, secrets_in
from .base import (
    PRIORITY_SEP,
    PRIORITY_STEPS,
    DeadLetter,
    Delivery,
    message_priority,
    owner_id,
    priority_key,
    protocol1_field,
)
from .redis_scripts import (
    DEFER,
    FETCH,
    HEARTBEAT,
    PROMOTE,
    RELEASE,
    REQUEUE_DEAD,
    REQUEUE_ONE_DEAD,
)

logger = logging.getLogger(__name__)

UNACKED = "unacked"
PUBLISH_CHUNK = 1000  # messages per LPUSH in publish_many
UNACKED_INDEX = "unacked_index"
DEAD_PREFIX = "celeriac.dead."
DELAYED = "celeriac.delayed"
HEARTBEATS = "celeriac.heartbeats"
OWNED_PREFIX = "celeriac.owned."
IDLE_PREFIX = "celeriac.idle."  # what an owner held but had not started at its last beat
FETCHING_PREFIX = "celeriac.fetching."  # each consumer's last fetch, for a lost answer
INBOX_PREFIX = "celeriac.inbox."  # where an idle consumer's blocking move puts a message
INBOXES = "celeriac.inboxes"  # owner -> the queue its inbox takes from
BLOCK_GRACE_S = 1.0  # a blocking move's answer later than its timeout plus this: a dead link
LOSSES = "celeriac.losses"
# broker_transport_options["socket_timeout"]'s default; every wait the broker asks Redis for
# (a blocking move) is far shorter
SOCKET_TIMEOUT_S = 30.0
RESTORE_MUTEX = "celeriac.restore_mutex"
REVOKED = "celeriac.revoked"
REVOKED_VERSION = "celeriac.revoked.version"
T = TypeVar("T")
P = ParamSpec("P")

# builtins.ConnectionError, not OSError: our own TimeoutError is an OSError too
CONNECTION_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
)


def _broker_errors(
    method: Callable[Concatenate[RedisBroker, P], T],
) -> Callable[Concatenate[RedisBroker, P], T]:
    """Report a lost connection as BrokerError, the one error the worker's loops expect and
    survive (a raw redis ConnectionError escaping them took a prefork child down)."""

    def wrapper(self: RedisBroker, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(self, *args, **kwargs)
        except CONNECTION_ERRORS as exc:
            raise BrokerError(f"lost the broker at {safe_url(self.url)}: {exc}") from exc

    functools.update_wrapper(wrapper, method)
    return wrapper


def dead_key(queue: str) -> str:
    return DEAD_PREFIX + queue


def queue_keys(queues: Sequence[str]) -> list[tuple[str, str]]:
    """(key, queue) pairs in Celery's BRPOP order: every queue at one level, level by level."""
    return [(priority_key(q, step), q) for step in PRIORITY_STEPS for q in queues]


class RedisBroker:
    def __init__(self, url: str, settings: Settings, client_name: str = "celeriac") -> None:
        self.url = url
        options = dict(settings.broker_transport_options or {})
        self.visibility_timeout_s = float(options.get("visibility_timeout", 3600))
        self._client_name = client_name
        self._connect_timeout_s = float(settings.broker_connection_timeout or 4.0)
        # no answer within this: a clear error, not a hang (a Redis frozen by SIGSTOP, say)
        self._socket_timeout_s = float(options.get("socket_timeout") or SOCKET_TIMEOUT_S)
        self._retry_policy = dict(settings.task_publish_retry_policy or {})
        self._publish_retry = bool(settings.task_publish_retry)
        try:
            # a plain Redis URL or Celery's sentinel:// list (redis_connect)
            self._client = redis_client(
                url,
                settings,
                "broker",
                client_name=client_name,
                socket_connect_timeout=self._connect_timeout_s,
                socket_timeout=self._socket_timeout_s,
                socket_keepalive=True,
                health_check_interval=30,
            )
        except ValueError as exc:
            reason = scrub(str(exc), secrets_in(url))
            raise BrokerError(f"invalid Redis broker URL {safe_url(url)!r}: {reason}") from None
        self.owner = owner_id(client_name)
        self._owned_key = OWNED_PREFIX + self.owner
        self._fetching_key = FETCHING_PREFIX + self.owner
        self._unanswered: str | None = None  # id of a fetch whose answer was lost
        self._inbox_key = INBOX_PREFIX + self.owner
        self._inbox_queue = ""  # the queue this consumer's inbox takes from, once it has one
        self._stash: list[Delivery] = []  # read outside a fetch: the next fetch returns them
        self._no_blocking_move = False  # set when Redis refuses BLMOVE (older than 6.2)
        self._fetch_conn: Any = None
        self._fetch_pid = os.getpid()
        self._ahead_call: tuple[list[str], list[Any]] | None = None  # sent, answer not read
        self._fetch_script = self._client.register_script(FETCH)
        self._heartbeat_script = self._client.register_script(HEARTBEAT)
        self._release_script = self._client.register_script(RELEASE)
        self._defer_script = self._client.register_script(DEFER)
        self._promote_script = self._client.register_script(PROMOTE)
        self._requeue_dead_script = self._client.register_script(REQUEUE_DEAD)
        self._requeue_one_dead_script = self._client.register_script(REQUEUE_ONE_DEAD)
        self._declared: set[str] = set()
        self._waiter: _ChangeWaiter | None = None
        self._found_empty_at = 0.0  # monotonic time a fetch last came back empty
        self._publish_lock = threading.Lock()
        self._publish_conn: Any = None
        self._publish_pid = os.getpid()

    # producing
    def publish(self, queue: str, envelope: bytes, priority: int = 0) -> None:
        if queue in self._declared and self._publish_lock.acquire(blocking=False):
            # the fast path: one LPUSH on a connection of our own, without redis-py's
            # per-command pool checkout; any trouble goes the pipelined way, with retries
            try:
                if self._publish_direct(priority_key(queue, priority), envelope):
                    return
            finally:
                self._publish_lock.release()
        self.publish_many([(queue, envelope, priority)])

    def _publish_direct(self, key: str, envelope: bytes) -> bool:
        try:
            conn = self._publish_conn
            if conn is None or self._publish_pid != os.getpid():
                # checked out of the pool for good, so closing the client closes it too
                conn = self._publish_conn = self._client.connection_pool.get_connection()
                self._publish_pid = os.getpid()
            conn.send_packed_command(pack(("LPUSH", key, envelope)))
            conn.read_response()
        except (*CONNECTION_ERRORS, redis.exceptions.ResponseError, OSError) as exc:
            conn, self._publish_conn = self._publish_conn, None
            if conn is not None:
                conn.disconnect()
            if _no_answer(exc):
                raise self._unanswered_publish(exc) from exc
            return False
        return True

    def _unanswered_publish(self, exc: BaseException) -> BrokerError:
        return BrokerError(
            f"the Redis broker at {safe_url(self.url)} did not answer a publish within "
            f"{self._socket_timeout_s:g} s (socket_timeout): {exc}. It may be paused or "
            f"overloaded; the message may still be delivered when it answers again, so it "
            f"was not sent a second time: check before sending it again, or raise "
            f"broker_transport_options['socket_timeout']"
        )

    def publish_many(self, items: Sequence[tuple[str, bytes, int]]) -> None:
        def send() -> None:
            pipe = self._client.pipeline(transaction=False)
            for queue, _, _ in items:
                if queue not in self._declared:
                    # kombu resolves named exchanges through this set; Celery clients write it too
                    member = f"{queue}{PRIORITY_SEP}{PRIORITY_SEP}{queue}"
                    pipe.sadd(f"_kombu.binding.{queue}", member)
            # one LPUSH per run of messages for the same list: the list ends up as after one
            # LPUSH per message, at a fraction of the cost
            run_key: str | None = None
            run: list[bytes] = []
            last: tuple[str, int] | None = None
            key = ""
            for queue, envelope, priority in items:
                if (queue, priority) != last:
                    last, key = (queue, priority), priority_key(queue, priority)
                if key != run_key or len(run) >= PUBLISH_CHUNK:
                    if run_key is not None:
                        pipe.lpush(run_key, *run)
                    run_key, run = key, []
                run.append(envelope)
            if run_key is not None:
                pipe.lpush(run_key, *run)
            pipe.execute()
            self._declared.update(queue for queue, _, _ in items)

        self._with_publish_retry(send)

    def _with_publish_retry(self, action: Callable[[], T]) -> T:
        policy = self._retry_policy
        max_retries = int(policy.get("max_retries", 3)) if self._publish_retry else 0
        interval = float(policy.get("interval_start", 0.0))
        step = float(policy.get("interval_step", 0.2))
        cap = float(policy.get("interval_max", 0.2))
        attempt = 0
        while True:
            try:
                return action()
            except redis.exceptions.OutOfMemoryError as exc:
                raise BrokerError(
                    f"the Redis broker at {safe_url(self.url)} refused the message: {exc} "
                    f"It is full (maxmemory, policy noeviction), so nothing was queued: free "
                    f"memory (let the workers drain, or raise maxmemory) and send it again"
                ) from exc
            except CONNECTION_ERRORS as exc:
                if _no_answer(exc):  # sent, maybe applied later: never sent twice
                    raise self._unanswered_publish(exc) from exc
                if attempt >= max_retries:
                    raise BrokerError(
                        f"cannot reach the Redis broker at {safe_url(self.url)} after "
                        f"{attempt + 1} attempts ({exc}); check that redis-server is running "
                        f"and that broker_url is right"
                    ) from exc
                logger.warning(
                    "broker %s unreachable (%s); retry %d/%d in %.1fs",
                    safe_url(self.url),
                    exc,
                    attempt + 1,
                    max_retries,
                    interval,
                )
                time.sleep(interval)
                interval = min(cap, interval + step)
                attempt += 1

    # consuming
    def fetch(
        self,
        queues: Sequence[str],
        max_count: int,
        timeout_s: float,
        acks: Sequence[str] = (),
    ) -> list[Delivery]:
        """Take up to *max_count* messages (acking *acks* in the same call); when there are
        none, wait up to *timeout_s* for one to arrive."""
        return self._fetch_or_wait(queues, max_count, timeout_s, acks, self._wait_then_fetch)

    def wait_and_take(
        self,
        queues: Sequence[str],
        max_count: int,
        timeout_s: float,
        acks: Sequence[str] = (),
        meanwhile: Callable[[], None] | None = None,
    ) -> list[Delivery]:
        """``fetch`` for a consumer that runs what it takes one at a time in its own thread
        and whose last fetch found the queue drained. Waiting for work on one queue, the
        wake-up itself carries the next message: a blocking BLMOVE puts it in this consumer's
        inbox (in Redis, never only here) and the fetch script queued behind it adopts it
        into ``unacked`` at once, with up to *max_count* - 1 more. *acks* go out first in the
        same write, so acking, taking and waiting cost one round trip; *meanwhile* runs once
        it is sent. Recovery adopts whatever a dead consumer's inbox still holds, then puts
        it back as usual."""
        keys = queue_keys(queues)
        if (
            len(queues) == 1
            and timeout_s > 0
            and not self._no_blocking_move
            and not self._stash
            and self._ahead_call is None
            and self._unanswered is None
        ):
            return self._take_on_wake(keys, max_count, timeout_s, acks, meanwhile)
        wait = self._take_on_wake if len(queues) == 1 else self._wait_then_fetch
        found = self._fetch_now(keys, max_count, acks)
        if meanwhile is not None:
            meanwhile()
        if found or timeout_s <= 0:
            return found
        return wait(keys, max_count, timeout_s)

    def _fetch_or_wait(
        self,
        queues: Sequence[str],
        max_count: int,
        timeout_s: float,
        acks: Sequence[str],
        wait: Callable[[list[tuple[str, str]], int, float], list[Delivery]],
    ) -> list[Delivery]:
        keys = queue_keys(queues)
        found_empty_at, self._found_empty_at = self._found_empty_at, 0.0
        if (
            timeout_s > 0
            and not acks
            and not self._stash
            and time.monotonic() - found_empty_at < 0.05
        ):
            # the caller's fetch found nothing a moment ago: go straight to waiting, whose
            # first step reads the queue lengths and so sees anything that came since
            deliveries = []
        else:
            deliveries = self._fetch_now(keys, max_count, acks)
        if deliveries or timeout_s <= 0:
            if not deliveries:
                self._found_empty_at = time.monotonic()
            return deliveries
        return wait(keys, max_count, timeout_s)

    def _wait_then_fetch(
        self, keys: list[tuple[str, str]], max_count: int, timeout_s: float
    ) -> list[Delivery]:
        woken = self._wait_for_change([key for key, _ in keys], timeout_s)
        return self._fetch_now(keys, max_count) if woken else []

    def _take_on_wake(
        self,
        keys: list[tuple[str, str]],
        max_count: int,
        timeout_s: float,
        acks: Sequence[str] = (),
        meanwhile: Callable[[], None] | None = None,
    ) -> list[Delivery]:
        queue = keys[0][1]
        if self._inbox_queue != queue:
            try:  # before the first blocking move: recovery reads where to put it back
                self._client.hset(INBOXES, self.owner, queue)
            except CONNECTION_ERRORS as exc:
                raise BrokerError(f"lost the broker at {safe_url(self.url)}: {exc}") from exc
            self._inbox_queue = queue
        # the acks go first; the script that adopts what the move takes (and takes what
        # else is there) goes out behind it on the same connection: Redis runs it as soon as
        # the move is done, so the message sits in the inbox only for that instant, and the
        # answers come back together
        before = self._ack_command(acks) if acks else None
        adopt = self._fetch_call(keys, max(0, max_count - 1), ())
        got, acked, moved = self._take_or_wait(keys, timeout_s, adopt, before, meanwhile)
        if isinstance(got, list):
            self._unanswered = None
            deliveries = _deliveries(got)
            if acks and not acked:  # refused or not run: acks are safe to send again
                deliveries += self._fetch_now(keys, 0, acks)
            return deliveries
        if got is True or (acks and not acked):
            # another priority list has work, the script was not loaded, or the acks did not
            # go through: an ordinary fetch (with the acks again: harmless if applied), which
            # adopts what the move took, if it took one
            return self._fetch_now(keys, max_count - moved, acks if not acked else ())
        self._unanswered = None
        return []

    def _ack_command(self, acks: Sequence[str]) -> tuple[Any, ...]:
        """The fetch script as an ack alone."""
        return self._fetch_command(self._fetch_call([], 0, acks, ack_only=True))

    def _fetch_command(self, call: tuple[list[str], list[Any]]) -> tuple[Any, ...]:
        """The command that runs the fetch script for *call* (keys, arguments)."""
        keys, args = call
        return ("EVALSHA", self._fetch_script.sha, len(keys), *keys, *args)

    def _take_or_wait(
        self,
        keys: list[tuple[str, str]],
        timeout_s: float,
        adopt: tuple[list[str], list[Any]],
        before: tuple[Any, ...] | None = None,
        meanwhile: Callable[[], None] | None = None,
    ) -> tuple[list[Any] | bool, bool, bool]:
        """What the blocking move brought (see ``_ChangeWaiter.take_or_wait``), whether
        *before* was applied, and whether the move took a message."""
        if self._no_blocking_move:
            if meanwhile is not None:
                meanwhile()
            woken = self._wait_for_change([key for key, _ in keys], timeout_s)
            return woken, before is None, False
        command = self._fetch_command(adopt)
        try:
            return self._with_waiter(
                lambda waiter: waiter.take_or_wait(
                    keys[0][0],
                    self._inbox_key,
                    [k for k, _ in keys[1:]],
                    timeout_s,
                    command,
                    before,
                    meanwhile,
                )
            )  # after a lost connection, a message it moved waits in the inbox: adopted later
        except redis.exceptions.ResponseError as exc:  # Redis before 6.2: no BLMOVE
            logger.info("waiting for work the usual way: %s", exc)
            self._no_blocking_move = True
            self._close_waiter()
            woken = self._wait_for_change([key for key, _ in keys], timeout_s)
            return woken, False, False

    def _wait_for_change(self, keys: list[str], timeout_s: float) -> bool:
        """Sleep until a watched key changes."""
        return self._with_waiter(lambda waiter: waiter.wait(keys, timeout_s))

    def _with_waiter(self, action: Callable[[_ChangeWaiter], T]) -> T:
        """Run *action* on the waiter. Its connections are not pooled: after Redis restarts
        they are dead while the pool's own reconnect, so a failure on them gets one fresh
        waiter before it counts as losing the broker."""
        for attempt in (1, 2):
            try:
                if self._waiter is None:
                    self._waiter = _ChangeWaiter(self._client, self._client_name)
                return action(self._waiter)
            except CONNECTION_ERRORS as exc:
                self._close_waiter()
                if attempt == 2:
                    raise BrokerError(f"lost the broker at {safe_url(self.url)}: {exc}") from exc
                logger.debug("wake-up connections lost (%s); opening new ones", exc)
        raise AssertionError("unreachable")

    def _close_waiter(self) -> None:
        if self._waiter is not None:
            self._waiter.close()
            self._waiter = None

    def _fetch_call(
        self,
        keys: list[tuple[str, str]],
        max_count: int,
        acks: Sequence[str],
        *,
        ack_only: bool = False,
    ) -> tuple[list[str], list[Any]]:
        """The fetch script's keys and arguments. A fetch whose answer was lost is asked
        again under its own id first: the script then hands back what that one took.
        *ack_only*: a call that takes nothing and leaves the inbox be, so there is nothing
        to ask again for."""
        acks = [a for a in acks if a]
        if ack_only:
            request = os.urandom(8).hex()
        else:
            request = self._unanswered or os.urandom(8).hex()
            self._unanswered = request  # until its answer is read
        return (
            [UNACKED, UNACKED_INDEX, self._owned_key, LOSSES, self._fetching_key, self._inbox_key]
            + [k for k, _ in keys],
            [
                max_count,
                repr(time.time()),
                request,
                "" if ack_only else self._inbox_queue,
                len(acks),
                *acks,
                *(q for _, q in keys),
            ],
        )

    def _fetch_now(
        self, keys: list[tuple[str, str]], max_count: int, acks: Sequence[str] = ()
    ) -> list[Delivery]:
        # a fetch sent ahead shares the connection: its answer comes first (the consumer
        # always reads it itself before fetching again, so this is only a safety net)
        pending = self.take_ahead() if self._ahead_call is not None else []
        pending[:0], self._stash = self._stash, []
        call = self._fetch_call(keys, max_count, acks)
        for attempt in (1, 2):
            try:
                self._send_fetch(call)
                return pending + self._read_fetch(call)
            except (*CONNECTION_ERRORS, OSError) as exc:
                # a stale connection (Redis restarted) gets one fresh one; the same request
                # id makes asking again safe even if the first one ran
                self._drop_fetch_conn()
                if attempt == 2:
                    raise BrokerError(f"lost the broker at {safe_url(self.url)}: {exc}") from exc
        return []

    def fetch_ahead(self, queues: Sequence[str], max_count: int, acks: Sequence[str]) -> bool:
        """Send a fetch (acking *acks*) whose answer ``take_ahead`` reads later, so the caller
        runs a task while Redis works. False if it could not be sent: nothing was done."""
        if self._ahead_call is not None or self._unanswered is not None:
            return False
        call = self._fetch_call(queue_keys(queues), max_count, acks)
        try:
            self._send_fetch(call)
        except (*CONNECTION_ERRORS, OSError) as exc:
            self._drop_fetch_conn()
            logger.debug("could not send a fetch ahead: %s", exc)
            return False  # asked again (same id) by the next fetch, in case it got through
        self._ahead_call = call
        return True

    def take_ahead(self) -> list[Delivery]:
        """The messages of the fetch ``fetch_ahead`` sent. When its answer is lost the next
        fetch asks again under the same id and gets them."""
        call, self._ahead_call = self._ahead_call, None
        if call is None:
            return []
        try:
            return self._read_fetch(call)
        except (*CONNECTION_ERRORS, OSError) as exc:
            self._drop_fetch_conn()
            raise BrokerError(f"lost the broker at {safe_url(self.url)}: {exc}") from exc

    def _send_fetch(self, call: tuple[list[str], list[Any]]) -> None:
        """The fetch script goes out on a connection of its own, without redis-py's
        per-command pool checkout: a fetch is on every task's path."""
        conn = self._fetch_conn
        if conn is None or self._fetch_pid != os.getpid():
            # checked out of the pool for good, so closing the client closes it too
            conn = self._fetch_conn = self._client.connection_pool.get_connection()
            self._fetch_pid = os.getpid()
        conn.send_packed_command(pack(self._fetch_command(call)))

    def _read_fetch(self, call: tuple[list[str], list[Any]]) -> list[Delivery]:
        try:
            rows = self._fetch_conn.read_response()
        except redis.exceptions.NoScriptError:
            # not run: Redis has no copy of the script (new or restarted); redis-py loads it
            rows = self._fetch_script(keys=call[0], args=call[1])
        except redis.exceptions.ResponseError as exc:  # out of memory, say: not run
            raise BrokerError(
                f"the Redis broker at {safe_url(self.url)} refused a fetch: {exc}; "
                f"check its log and memory (maxmemory)"
            ) from exc
        self._unanswered = None
        return _deliveries(rows)

    def _settle_fetches(self) -> None:
        """Read the answer of a fetch still on its way, so whatever comes next (an ack, a
        requeue) reaches Redis after it; what it brought is kept for the next fetch."""
        if self._ahead_call is not None:
            with contextlib.suppress(BrokerError):  # then the next fetch asks again
                self._stash.extend(self.take_ahead())

    def _drop_fetch_conn(self) -> None:
        conn, self._fetch_conn = self._fetch_conn, None
        if conn is not None and self._fetch_pid == os.getpid():
            conn.disconnect()

    @_broker_errors
    def ack(self, receipts: Sequence[str]) -> None:
        receipts = [r for r in receipts if r]
        if not receipts:
            return
        self._settle_fetches()
        pipe = self._client.pipeline(transaction=True)
        pipe.zrem(UNACKED_INDEX, *receipts)
        pipe.hdel(UNACKED, *receipts)
        pipe.srem(self._owned_key, *receipts)
        pipe.hdel(LOSSES, *receipts)
        pipe.execute()

    @_broker_errors
    def requeue(self, receipts: Sequence[str], *, to_front: bool = True) -> int:
        """Put unacked messages back on their queues (RPUSH: next to be taken, as kombu does)."""
        self._settle_fetches()
        restored, _ = self._restore(
            receipts, to_front=to_front, max_losses=None, owned_key=self._owned_key
        )
        return restored

    @_broker_errors
    def requeue_owned(self, keep: Collection[str]) -> list[str]:
        """Put back every message this consumer holds except *keep* (the running ones),
        including a batch fetched ahead whose answer is not read yet. It never touches the
        fetch connection, so another thread may call it while the consumer runs a task (a
        warm shutdown hands back at once). Returns the tags it put back."""
        held = self._client.smembers(self._owned_key)
        tags = [t.decode() if isinstance(t, bytes) else str(t) for t in held]
        back = [tag for tag in tags if tag not in keep]
        if back:
            self._restore(back, to_front=True, max_losses=None, owned_key=self._owned_key)
        return back

    @_broker_errors
    def restore_lost(
        self, receipts: Sequence[str], max_losses: int, owner: str | None = None
    ) -> tuple[int, int]:
        """Put back messages whose worker died; a message lost more than *max_losses* times
        goes to the dead-letter list instead, so a task that kills its worker cannot loop.
        Returns (restored, dead-lettered). *owner*: the dead holder, whose owned set forgets
        each tag in the same transaction, so a later ``recover_owner`` of that holder cannot
        put back a copy a live worker has taken since."""
        owned_key = OWNED_PREFIX + owner if owner else None
        return self._restore(receipts, to_front=True, max_losses=max_losses, owned_key=owned_key)

    def _restore(
        self,
        receipts: Sequence[str],
        *,
        to_front: bool,
        max_losses: int | None,
        owned_key: str | None = None,
        spared: Collection[str] = (),
    ) -> tuple[int, int]:
        """Put each message back (or dead-letter it); *owned_key*: the holder's set of held
        tags, which forgets them in the same transaction; *spared*: tags that go back
        without counting a loss (known never started)."""
        counts = {"restored": 0, "dead": 0}
        for tag in receipts:
            if not tag:
                continue

            losses = None if tag in spared else max_losses

            def restore(pipe: Any, tag: str = tag, losses: int | None = losses) -> Any:
                outcome = self._restore_one(pipe, tag, to_front, losses)
                if owned_key is not None:
                    pipe.srem(owned_key, tag)
                return outcome

            outcome = self._client.transaction(restore, UNACKED, LOSSES, value_from_callable=True)
            if outcome in counts:
                counts[outcome] += 1
        return counts["restored"], counts["dead"]

    def _restore_one(
        self, pipe: Any, tag: str, to_front: bool, max_losses: int | None
    ) -> str | None:
        stored = pipe.hget(UNACKED, tag)
        losses = int(pipe.hget(LOSSES, tag) or 0) + (1 if max_losses is not None else 0)
        if stored is None:
            pipe.multi()
            pipe.zrem(UNACKED_INDEX, tag)
            return None
        try:
            envelope, _exchange, routing_key = orjson.loads(stored)
            queue = routing_key if isinstance(routing_key, str) and routing_key else "celery"
            raw = orjson.dumps(envelope)
        except (ValueError, TypeError) as exc:
            logger.error("unacked entry %s is not kombu's [envelope, exchange, key]: %s", tag, exc)
            self._dead_in(pipe, tag, "celery", f"corrupt unacked entry: {exc}", stored)
            return "dead"
        priority = message_priority(raw)
        # a malformed envelope goes back as it was; the worker that takes it rejects it
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            raw = mark_redelivered(raw)
        if max_losses is not None and losses > max_losses:
            reason = (
                f"its worker died {losses} times while holding it "
                f"(task_max_redeliveries={max_losses})"
            )
            self._dead_in(pipe, tag, queue, reason, raw)
            return "dead"
        pipe.multi()
        pipe.zrem(UNACKED_INDEX, tag)
        pipe.hdel(UNACKED, tag)
        if max_losses is not None:
            pipe.hset(LOSSES, tag, losses)
        (pipe.rpush if to_front else pipe.lpush)(priority_key(queue, priority), raw)
        return "restored"

    @staticmethod
    def _dead_in(pipe: Any, tag: str, queue: str, reason: str, raw: bytes) -> None:
        pipe.multi()
        pipe.lpush(dead_key(queue), _dead_record(queue, reason, raw))
        pipe.zrem(UNACKED_INDEX, tag)
        pipe.hdel(UNACKED, tag)
        pipe.hdel(LOSSES, tag)

    # liveness and recovery
    @_broker_errors
    def heartbeat(
        self, owners: Sequence[str], started: Mapping[str, Collection[str]] | None = None
    ) -> None:
        """Mark *owners* alive now and keep the messages they hold from looking stale; with
        *started*, record what each named owner holds but has not begun (see base)."""
        if not owners:
            return
        args: list[Any] = [repr(time.time())]
        for owner in owners:
            begun = None if started is None else started.get(owner)
            if begun is None:
                args += [owner, -1]
            else:
                args += [owner, len(begun), *begun]
        self._heartbeat_script(keys=[HEARTBEATS, UNACKED_INDEX], args=args)

    @_broker_errors
    def retire(self, owner: str | None = None) -> None:
        """Forget an owner that stopped cleanly (after it put back what it held)."""
        owner = owner or self.owner
        if owner == self.owner and self._inbox_queue:
            # whatever this consumer was never handed (a lost answer) goes back
            self._settle_fetches()
            stray, self._stash = self._fetch_now([], 0), []
            self.requeue([d.receipt for d in stray if d.receipt])
        pipe = self._client.pipeline(transaction=True)
        pipe.zrem(HEARTBEATS, owner)
        pipe.hdel(INBOXES, owner)
        pipe.delete(OWNED_PREFIX + owner, FETCHING_PREFIX + owner, IDLE_PREFIX + owner)
        pipe.execute()

    @_broker_errors
    def adopt_inbox(self, owner: str) -> list[str]:
        """Record what a blocking move left in dead *owner*'s inbox as that owner's unacked
        messages (the fetch script, run with its keys), so recovery treats them as the rest:
        acked or put back by the lost-task policy, a loss counted, dead-lettered past
        ``task_max_redeliveries``."""
        queue = self._client.hget(INBOXES, owner)
        if queue is None:
            return []
        keys = [UNACKED, UNACKED_INDEX, OWNED_PREFIX + owner, LOSSES, FETCHING_PREFIX + owner]
        adopted = self._fetch_script(
            keys=[*keys, INBOX_PREFIX + owner],
            args=[0, repr(time.time()), os.urandom(8).hex(), _text(queue), 0],
        )
        return [_text(entry[1]) for entry in adopted or () if len(entry) > 1 and entry[1]]

    @_broker_errors
    def recover_owner(self, owner: str, max_losses: int | None) -> tuple[int, int]:
        """Put back everything a dead owner held, and forget the owner. A loss counts only
        for what it may have begun: not for what its last beat said it had not started
        (a message still in its inbox may have been read off the blocking move: it counts)."""
        self.adopt_inbox(owner)
        tags = [_text(t) for t in self._client.smembers(OWNED_PREFIX + owner)]
        spared: set[str] = set()
        if max_losses is not None:
            spared.update(_text(t) for t in self._client.smembers(IDLE_PREFIX + owner))
        counts = self._restore(tags, to_front=True, max_losses=max_losses, spared=spared)
        self.retire(owner)
        return counts

    @_broker_errors
    def silent_owners(self, silent_for_s: float) -> list[str]:
        cutoff = time.time() - silent_for_s
        return [_text(o) for o in self._client.zrangebyscore(HEARTBEATS, "-inf", cutoff)]

    @_broker_errors
    def recover(
        self, dead_after_s: float, visibility_timeout_s: float | None, max_losses: int
    ) -> tuple[int, int]:
        """Put back the messages of owners whose heartbeat stopped, and (last resort) any
        unacked message older than the visibility timeout. One worker at a time does it.
        Returns (restored, dead-lettered)."""
        token = uuid.uuid4().hex
        # short: a sweeper killed while holding it must not stop the others for long, and two
        # sweeps at once are safe (each restore is a WATCHed transaction)
        if not self._client.set(RESTORE_MUTEX, token, nx=True, px=5_000):
            return (0, 0)
        restored = dead = 0
        try:
            now = time.time()
            for raw_owner in self._client.zrangebyscore(HEARTBEATS, "-inf", now - dead_after_s):
                owner = _text(raw_owner)
                r, d = self.recover_owner(owner, max_losses)
                restored, dead = restored + r, dead + d
                if r or d:
                    logger.warning(
                        "owner %s stopped beating: restored %d message(s), dead-lettered %d",
                        owner,
                        r,
                        d,
                    )
            if visibility_timeout_s:
                stale = self._client.zrangebyscore(
                    UNACKED_INDEX, "-inf", now - visibility_timeout_s
                )
                r, d = self.restore_lost([_text(t) for t in stale], max_losses)
                restored, dead = restored + r, dead + d
                if r or d:
                    logger.warning(
                        "visibility timeout: restored %d message(s) with no live "
                        "owner, dead-lettered %d",
                        r,
                        d,
                    )
        finally:
            self._release_script(keys=[RESTORE_MUTEX], args=[token])
        return restored, dead

    # revoked task ids, kept broker-side so every worker (and one started later) knows them
    @_broker_errors
    def add_revoked(self, task_ids: Sequence[str], ttl_s: float) -> None:
        if not task_ids:
            return
        now = time.time()
        pipe = self._client.pipeline(transaction=True)
        pipe.zadd(REVOKED, dict.fromkeys(task_ids, now + ttl_s))
        pipe.zremrangebyscore(REVOKED, "-inf", now)
        pipe.incr(REVOKED_VERSION)
        pipe.execute()

    @_broker_errors
    def revoked_version(self) -> int:
        return int(self._client.get(REVOKED_VERSION) or 0)

    @_broker_errors
    def revoked_ids(self) -> set[str]:
        return {_text(t) for t in self._client.zrangebyscore(REVOKED, time.time(), "+inf")}

    @_broker_errors
    def defer(self, delivery: Delivery, due_s: float) -> None:
        """Park a message due later broker-side (not in worker memory) until *due_s*."""
        self._settle_fetches()
        self._defer_script(
            keys=[UNACKED, UNACKED_INDEX, DELAYED],
            args=[delivery.receipt, repr(due_s), _priority_list(delivery), delivery.raw],
        )
        self._client.srem(self._owned_key, delivery.receipt)

    def promote_due(self, now_s: float, limit: int = 1000) -> float | None:
        """Queue parked messages that are due; returns when the next one falls due."""
        try:
            nxt = self._promote_script(keys=[DELAYED], args=[repr(now_s), limit])
        except CONNECTION_ERRORS as exc:
            raise BrokerError(f"lost the broker at {safe_url(self.url)}: {exc}") from exc
        return float(nxt) if nxt else None

    @_broker_errors
    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self._settle_fetches()
        pipe = self._client.pipeline(transaction=True)
        pipe.lpush(dead_key(delivery.queue), _dead_record(delivery.queue, reason, delivery.raw))
        if delivery.receipt:
            pipe.zrem(UNACKED_INDEX, delivery.receipt)
            pipe.hdel(UNACKED, delivery.receipt)
            pipe.srem(self._owned_key, delivery.receipt)
            pipe.hdel(LOSSES, delivery.receipt)
        pipe.execute()

    def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        try:
            items = self._client.lrange(dead_key(queue), 0, limit - 1)
        except CONNECTION_ERRORS as exc:
            raise self._unreachable(exc) from exc
        return [_dead_letter_from(item, queue) for item in items]

    def dead_letter_count(self, queue: str) -> int:
        try:
            return int(self._client.llen(dead_key(queue)))
        except CONNECTION_ERRORS as exc:
            raise self._unreachable(exc) from exc

    def requeue_dead(self, queue: str, task_id: str | None = None) -> int:
        try:
            moved = self._requeue_dead_script(keys=[dead_key(queue)], args=[task_id or "", queue])
            if task_id:  # the script matched headers.id; protocol 1 keeps the id in the body
                moved += self._requeue_protocol1_dead(queue, task_id)
        except CONNECTION_ERRORS as exc:
            raise self._unreachable(exc) from exc
        return int(moved)

    def _requeue_protocol1_dead(self, queue: str, task_id: str) -> int:
        """Move back, oldest first, the dead protocol 1 messages of *task_id*: each record
        only if it is still on the dead list, so two requeues never push one message twice."""
        moved = 0
        for item in reversed(self._client.lrange(dead_key(queue), 0, -1)):
            raw = _dead_letter_from(item, queue).raw
            if protocol1_field(raw, "id") != task_id:
                continue
            target = priority_key(queue, message_priority(raw))
            moved += int(
                self._requeue_one_dead_script(keys=[dead_key(queue), target], args=[item, raw])
            )
        return moved

    def purge_dead(self, queue: str) -> int:
        pipe = self._client.pipeline(transaction=True)
        pipe.llen(dead_key(queue))
        pipe.delete(dead_key(queue))
        try:
            removed, _ = pipe.execute()
        except CONNECTION_ERRORS as exc:
            raise self._unreachable(exc) from exc
        return int(removed)

    def _unreachable(self, exc: Exception) -> BrokerError:
        return BrokerError(
            f"cannot reach the Redis broker at {safe_url(self.url)} ({exc}); "
            f"check that redis-server is running and that broker_url is right"
        )

    @_broker_errors
    def queue_length(self, queue: str) -> int:
        pipe = self._client.pipeline(transaction=False)
        for step in PRIORITY_STEPS:
            pipe.llen(priority_key(queue, step))
        return sum(pipe.execute())

    @_broker_errors
    def purge(self, queues: Sequence[str]) -> int:
        removed = 0
        for queue in queues:
            keys = [priority_key(queue, step) for step in PRIORITY_STEPS]
            pipe = self._client.pipeline(transaction=True)
            for key in keys:
                pipe.llen(key)
            pipe.delete(*keys)
            removed += sum(pipe.execute()[:-1])
        return removed

    def ping(self) -> None:
        try:
            self._client.ping()
        except CONNECTION_ERRORS as exc:
            raise BrokerError(
                f"cannot reach the Redis broker at {safe_url(self.url)} ({exc}); "
                f"check that redis-server is running and that broker_url is right"
            ) from exc

    @property
    def client(self) -> redis.Redis:
        return self._client

    def close(self) -> None:
        self._close_waiter()
        conn, self._publish_conn = self._publish_conn, None
        if conn is not None and self._publish_pid == os.getpid():
            conn.disconnect()
        self._ahead_call = None
        self._drop_fetch_conn()
        self._client.close()


def _deliveries(rows: list[list[bytes]]) -> list[Delivery]:
    return [Delivery(queue.decode(), tag.decode(), raw) for queue, tag, raw in rows]


def _priority_list(delivery: Delivery) -> str:
    """The list a message goes back to when due: its queue at its priority."""
    try:
        priority = int(orjson.loads(delivery.raw)["properties"].get("priority") or 0)
    except (ValueError, TypeError, KeyError, AttributeError):
        priority = 0
    return priority_key(delivery.queue, priority)


def _no_answer(exc: BaseException) -> bool:
    """A command went out and no answer came back in time (not a refused or failed connect):
    Redis may still apply it."""
    return isinstance(exc, redis.exceptions.TimeoutError) and "reading" in str(exc)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _dead_letter_from(item: bytes | str, queue: str) -> DeadLetter:
    """A record of a dead list; one that is not ours (not a JSON object) is shown as is."""
    try:
        record = orjson.loads(item)
    except orjson.JSONDecodeError:
        record = _lenient_record(item)
    if not isinstance(record, dict):
        raw = item.encode() if isinstance(item, str) else bytes(item)
        return DeadLetter(queue, "unreadable dead-letter record", 0.0, raw)
    raw = record.get("message", "")
    if isinstance(raw, str):
        # bytes that were not UTF-8 come back as they were (see _lenient_record)
        raw = raw.encode("utf-8", "surrogateescape")
    moment = record.get("time")
    return DeadLetter(
        queue=str(record.get("queue") or queue),
        reason=str(record.get("reason") or ""),
        time=float(moment) if isinstance(moment, (int, float)) else 0.0,
        raw=raw if isinstance(raw, bytes) else orjson.dumps(raw),
    )


def _lenient_record(item: bytes | str) -> Any:
    """A record the fetch script wrote for a queue item that was not UTF-8: Redis's cjson
    copies such bytes into the JSON string as they are. Read them back byte for byte."""
    text = item if isinstance(item, str) else bytes(item).decode("utf-8", "surrogateescape")
    try:
        return json.loads(text)
    except ValueError:
        return None


def _dead_record(queue: str, reason: str, raw: bytes | str) -> bytes:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return orjson.dumps({"queue": queue, "reason": reason, "time": time.time(), "message": text})


class _ChangeWaiter:
    """Sleeps until Redis reports a change to one of the watched keys.

    Uses client-side caching in its plain form: the watch connection reads each key's length
    with tracking on, redirecting invalidations to a second connection subscribed to
    ``__redis__:invalidate``. Any LPUSH to a watched key wakes us. Nothing is popped, so a
    message never sits only in this process.
    """

    def __init__(self, client: redis.Redis, client_name: str) -> None:
        kwargs = dict(client.connection_pool.connection_kwargs)
        kwargs["protocol"] = 2
        kwargs.pop("client_name", None)
        pool_class: Any = type(client.connection_pool.make_connection())
        self._notify: Any = pool_class(**kwargs, client_name=f"{client_name}:wake")
        self._watch: Any = pool_class(**kwargs, client_name=f"{client_name}:watch")
        self._notify.connect()
        self._notify.send_command("CLIENT", "ID")
        notify_id = self._notify.read_response()
        self._notify.send_command("SUBSCRIBE", "__redis__:invalidate")
        self._notify.read_response()
        self._watch.connect()
        self._watch.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", notify_id)
        self._watch.read_response()
        self._block: Any = pool_class(**kwargs, client_name=f"{client_name}:take")
        self._block_id: int | None = None  # connected on first use
        self._expected = 0  # answers the blocking connection owes
        self._quiet: set[str] = set()  # tracked keys read empty, with no change reported since

    def wait(self, keys: Sequence[str], timeout_s: float) -> bool:
        """True when a watched key may have something; False after *timeout_s* of quiet."""
        self._drain()
        self._watch.send_packed_command(pack(*[("LLEN", k) for k in keys]))
        lengths = [self._watch.read_response() for _ in keys]
        if any(lengths):
            return True
        if self._notify.can_read(timeout=timeout_s):
            self._drain()
            return True
        return False

    def take_or_wait(
        self,
        key: str,
        inbox: str,
        others: Sequence[str],
        timeout_s: float,
        then: tuple[Any, ...],
        before: tuple[Any, ...] | None = None,
        meanwhile: Callable[[], None] | None = None,
    ) -> tuple[list[Any] | bool, bool, bool]:
        """Wait up to *timeout_s* for the next message of *key*, moved into *inbox* by the same
        blocking command that wakes us (BLMOVE), with the command *then* (the script that
        adopts the inbox) queued behind it on the same connection, and the command *before*
        (acks) ahead of it. Returns what *then* answered when it took something; True when
        one of *others* (the queue's other priority lists) may have work instead, or *then*
        could not run; False after *timeout_s* of quiet. And whether *before* ran, and
        whether the move took a message.

        The other lists' lengths are read with tracking on, once: until Redis reports a
        change to one of them, they are known to be empty and are not read again."""
        self._drain()
        if self._block_id is None:
            self._block.connect()
            self._block.send_command("CLIENT", "ID")
            self._block_id = int(self._block.read_response())
        # (a timeout of 0 would block for good)
        wait = f"{max(timeout_s, 0.01):.3f}"
        commands = [("BLMOVE", key, inbox, "RIGHT", "LEFT", wait), then]
        if before is not None:
            commands.insert(0, before)
        self._block.send_packed_command(pack(*commands))
        self._expected = len(commands)
        if meanwhile is not None:
            meanwhile()
        unread = [k for k in others if k not in self._quiet]
        if unread:  # read their lengths with tracking on: a push to one wakes the notifier
            self._watch.send_packed_command(pack(*[("LLEN", k) for k in unread]))
            if any([self._watch.read_response() for _ in unread]):
                return self._stop_move()
            self._quiet.update(unread)
        deadline = time.monotonic() + timeout_s + BLOCK_GRACE_S
        while True:
            if self._block.can_read(timeout=0):
                return self._answers(default=False)
            if self._notify.can_read(timeout=0):
                return self._stop_move()
            left = deadline - time.monotonic()
            if left <= 0:  # no answer in time: this connection is not to be trusted
                raise redis.exceptions.TimeoutError("no answer to a blocking move")
            select.select([self._block._sock, self._notify._sock], [], [], left)

    def _stop_move(self) -> tuple[list[Any] | bool, bool, bool]:
        """Another priority list has work: stop the blocking move (it may just have taken a
        message, which the script behind it then adopted)."""
        self._drain()
        self._watch.send_command("CLIENT", "UNBLOCK", self._block_id)
        self._watch.read_response()
        return self._answers(default=True)

    def _answers(self, default: bool) -> tuple[list[Any] | bool, bool, bool]:
        replies: list[Any] = []
        for _ in range(self._expected):  # every answer is read, errors included
            try:
                replies.append(self._block.read_response())
            except redis.exceptions.ResponseError as exc:
                replies.append(exc)
        self._expected = 0
        if isinstance(replies[-2], Exception):  # the move itself: Redis before 6.2
            raise replies[-2]
        before_ok = len(replies) < 3 or not isinstance(replies[0], Exception)
        moved = replies[-2] is not None
        rows = replies[-1]  # the moved message (replies[-2]) is in what the script answers
        if isinstance(rows, Exception):  # not run (Redis lost its scripts): a fetch adopts
            return True, before_ok, moved
        return (rows if rows else default), before_ok, moved

    def _drain(self) -> None:
        """Read pending change reports: whatever was known quiet may not be any more."""
        while self._notify.can_read(timeout=0):
            self._notify.read_response()
            self._quiet.clear()

    def close(self) -> None:
        for conn in (self._notify, self._watch, self._block):
            try:
                conn.disconnect()
            except CONNECTION_ERRORS:  # closing a dead socket
                logger.debug("error closing waiter connection", exc_info=True)
