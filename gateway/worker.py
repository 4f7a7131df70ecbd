"""Consumers of the Redis streams: priority lanes, retries, dead letters, reclaiming.

Every stage reads its streams through a consumer group, so several gateway processes
can share the work and each entry goes to one of them. An entry is acknowledged after
its handler has committed what it did. A handler that fails leaves the entry pending; it
is picked up again after `retry_idle_ms` (by this consumer or another one, which is also
how entries of a crashed process are reclaimed), and after `retries_max` deliveries it
moves to the dead-letter stream with the reason, for an operator to retry. Work that can
never succeed as it is (the NPC refused the message, 4xx) raises `DeadNow` and goes
there at once. The stage's `on_dead` marks the work in the database as dead-lettered
first (gateway.app: an outbox row leaves the sweeper's reach and its payment is held,
an inbox row is marked failed), so that each piece of work has one dead letter, not one
per sweep.

Handlers must be idempotent: the database, not the stream, says whether work is done.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any, Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway import keys
from gateway.redisstate import Outage

log = logging.getLogger("paygate.worker")

Handler = Callable[[str, str, dict[str, str]], Awaitable[None]]
# (stream, entry id, fields, reason, status the work was refused with or None) -> fields
# naming the work for the dead letter and its log line (`payment`, say), or None
DeadHook = Callable[[str, str, dict[str, str], str, "int | None"],
                    Awaitable["dict[str, str] | None"]]


class RetryLater(Exception):
    """The work cannot be done now for a reason outside it (the link is down, the NPC
    answers 503). The entry is acknowledged without counting a failure; the database
    still says the work is unfinished, so the gateway's sweeper puts it back later.

    `untaken`: a delivery to the NPC that provably did not give it the message (no
    connection was made, or the NPC answered 503); a timeout or a connection lost
    mid-request is not, since the NPC may have the message then. The outbox row counts
    such attempts (gateway.outbound.Delivery): only a payment whose every attempt was
    one may be taken back by an operator while the NPC is away."""

    def __init__(self, reason: str = "", untaken: bool = False) -> None:
        super().__init__(reason)
        self.untaken = untaken


class DeadNow(Exception):
    """The work can never succeed as it is (the NPC refused the message with a 4xx):
    dead-lettered at once, for an operator, without further deliveries."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status


BLOCK_MS = 500
RECLAIM_EVERY_S = 2.0
# Pauses before trying Redis again after it failed, growing while it stays away (a
# restart of the embedded server takes about a second; an outage may take minutes).
REDIS_RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)
# During an outage every waiting message fails the same way each time it is tried: one
# line per attempt was about a hundred lines a second. A cause's first retry is logged
# in full, its repeats are counted and summed up in one line per interval while they go
# on; a cause quiet for an interval is logged in full again when it comes back.
RETRY_LOG_INTERVAL_S = 10.0
# Distinct causes counted at once; further ones are counted together as "other causes".
RETRY_CAUSES_MAX = 64
OTHER_CAUSES = "other causes"


class RepeatedRetries:
    """`retry_later` lines of one stage at a bounded rate (see RETRY_LOG_INTERVAL_S)."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self._counts: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def note(self, cause: str, entry_id: str, fields: dict[str, str]) -> None:
        if cause not in self._counts and len(self._counts) >= RETRY_CAUSES_MAX:
            cause = OTHER_CAUSES
        if cause in self._counts:
            self._counts[cause] += 1
            return
        log.info("event=retry_later stage=%s entry=%s fields=%s reason=%s", self.stage,
                 entry_id, fields, cause)
        self._counts[cause] = 0
        self._schedule(cause)

    def _schedule(self, cause: str) -> None:
        self._timers[cause] = asyncio.get_running_loop().call_later(
            RETRY_LOG_INTERVAL_S, self._summarise, cause)

    def _summarise(self, cause: str) -> None:
        count = self._counts.pop(cause, 0)
        self._timers.pop(cause, None)
        if count:
            self._log_summary(cause, count)
            self._counts[cause] = 0
            self._schedule(cause)

    def _log_summary(self, cause: str, count: int) -> None:
        log.info("event=retry_later_repeated stage=%s count=%s interval_s=%s reason=%s",
                 self.stage, count, RETRY_LOG_INTERVAL_S, cause)

    def flush(self) -> None:
        """Write the counts not yet summed up (at stop)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for cause, count in self._counts.items():
            if count:
                self._log_summary(cause, count)
        self._counts.clear()


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


async def ensure_groups(r: aioredis.Redis, streams: tuple[str, ...]) -> None:
    for stream in streams:
        try:
            await r.xgroup_create(stream, keys.GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


class StreamWorker:
    def __init__(self, r: aioredis.Redis, name: str, streams: tuple[str, ...],
                 handler: Handler, *, batch_max: int = 100, retries_max: int = 6,
                 retry_idle_ms: int = 1000, concurrent: bool = True,
                 acks: Any = None, on_dead: DeadHook | None = None) -> None:
        self.r = r
        # Told of an entry before it is dead-lettered (stream, entry id, fields, reason,
        # the status it was refused with), so that the database stops naming its work as unfinished: else the sweeper
        # would put the same work back on the stream, and it would fail and be
        # dead-lettered again, for ever. Should it fail, the entry stays pending.
        self.on_dead = on_dead
        # Acknowledgements go through the gateway's Coalescer when given (one pipeline
        # for a burst of them), else straight to Redis.
        self._acks = acks
        self.name = name
        self.streams = streams
        self.handler = handler
        self.batch_max = batch_max
        self.retries_max = retries_max
        self.retry_idle_ms = retry_idle_ms
        self.concurrent = concurrent
        self.consumer = consumer_name()
        self.processed = 0
        self.failed = 0
        self._stopping = False
        self._inflight: set[asyncio.Task] = set()
        self.retries = RepeatedRetries(name)
        # Whether the last read found entries (more may wait); while entries wait, a
        # read is made once a quarter of the slots are free, not for each one that frees.
        self._backlog = False
        self._read_free_min = max(1, batch_max // 4)
        self.redis_outage = Outage(log, "redis_unavailable", stage=name)

    @property
    def in_flight(self) -> int:
        """Entries read and not yet handled."""
        return len(self._inflight)

    @property
    def stopped(self) -> bool:
        """Whether this stage has been told to stop (it takes no new entries)."""
        return self._stopping

    def stop(self) -> None:
        self._stopping = True

    async def run(self) -> None:
        """Consume until stopped. Redis going away (a restart, a crash, a flush that took
        the consumer groups with it) pauses the stage; it never ends it: the groups are
        made again and the gateway's sweeper puts lost work back from the database."""
        groups_ready = False
        last_reclaim = 0.0
        failures = 0
        loop = asyncio.get_running_loop()
        while not self._stopping:
            if failures:
                await asyncio.sleep(REDIS_RETRY_S[min(failures, len(REDIS_RETRY_S)) - 1])
            try:
                if not groups_ready:
                    await ensure_groups(self.r, self.streams)
                    groups_ready = True
                if loop.time() - last_reclaim >= RECLAIM_EVERY_S:
                    await self._reclaim()
                    last_reclaim = loop.time()
                free = self.batch_max - len(self._inflight)
                if free <= 0 or (self._backlog and free < self._read_free_min):
                    await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                for item in await self._read(free):
                    self._spawn(item)
                if failures:
                    failures = 0
                    self.redis_outage.recovered()
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                self.redis_outage.failed(exc)
                groups_ready = False
                failures += 1
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                log.warning("event=consumer_group_missing stage=%s", self.name)
                groups_ready = False

    def _spawn(self, item: tuple[str, str, dict[str, str]]) -> None:
        """Entries are handled as a pipeline: up to batch_max at once, and new ones are
        read as others finish, so one slow entry never holds up the others."""
        if not self.concurrent:
            raise AssertionError("_spawn is only for concurrent workers")
        task = asyncio.create_task(self._handle(*item))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def drain(self) -> None:
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        self.retries.flush()

    async def _read(self, count: int) -> list[tuple[str, str, dict[str, str]]]:
        # While entries wait (the last read found some), lanes are read in order: a later
        # lane is read only when the earlier ones are empty. Once they are empty, one read
        # of all of them waits up to BLOCK_MS and returns as soon as an entry arrives: no
        # read of each lane in turn, and no polling, while nothing comes.
        if self._backlog:
            for stream in self.streams:
                got = await self.r.xreadgroup(keys.GROUP, self.consumer, {stream: ">"},
                                              count=count)
                if got:
                    return _flatten(got)
        got = _flatten(await self.r.xreadgroup(keys.GROUP, self.consumer,
                                               {s: ">" for s in self.streams}, count=count,
                                               block=BLOCK_MS))
        self._backlog = bool(got)
        return got

    async def _handle_batch(self, batch: list[tuple[str, str, dict[str, str]]]) -> None:
        if self.concurrent:
            await asyncio.gather(*(self._handle(*item) for item in batch))
        else:
            for item in batch:
                await self._handle(*item)

    async def _handle(self, stream: str, entry_id: str, fields: dict[str, str]) -> None:
        """Handle one entry; never raises but for cancellation. Redis failing on the way
        (in the handler, the acknowledgement or the dead-letter check) leaves the entry
        pending: it is reclaimed once Redis is back, and the database says what is done."""
        try:
            await self._handle_once(stream, entry_id, fields)
        except (RedisConnectionError, RedisTimeoutError, ConnectionError) as exc:
            self.redis_outage.failed(exc)

    async def _handle_once(self, stream: str, entry_id: str, fields: dict[str, str]
                           ) -> None:
        try:
            await self.handler(stream, entry_id, fields)
        except (asyncio.CancelledError, RedisConnectionError, RedisTimeoutError):
            raise
        except RetryLater as exc:
            self.retries.note(str(exc), entry_id, fields)
            await self._ack(stream, entry_id)
            return
        except DeadNow as exc:
            self.failed += 1
            await self._dead(stream, entry_id, fields, str(exc), 1, exc.status)
            return
        except Exception as exc:
            self.failed += 1
            log.warning("event=stage_failed stage=%s stream=%s entry=%s fields=%s error=%r",
                        self.name, stream, entry_id, fields, exc)
            await self._maybe_dead(stream, entry_id, fields, repr(exc))
            return
        await self._ack(stream, entry_id)
        self.processed += 1

    async def _ack(self, stream: str, entry_id: str) -> None:
        if self._acks is not None:
            await self._acks.xack(stream, keys.GROUP, entry_id)
        else:
            await self.r.xack(stream, keys.GROUP, entry_id)

    async def _maybe_dead(self, stream: str, entry_id: str, fields: dict[str, str],
                          reason: str) -> None:
        info = await self.r.xpending_range(stream, keys.GROUP, min=entry_id, max=entry_id,
                                           count=1)
        deliveries = info[0]["times_delivered"] if info else 1
        if deliveries < self.retries_max:
            return
        await self._dead(stream, entry_id, fields, reason, deliveries)

    async def _dead(self, stream: str, entry_id: str, fields: dict[str, str], reason: str,
                    deliveries: int, status: int | None = None) -> None:
        """Move an entry to the dead-letter stream: its work marked in the database
        first (`on_dead`), then the letter, then the entry acknowledged."""
        await dead_letter(self.r, self.name, stream, entry_id, fields, reason, deliveries,
                          status, self.on_dead)
        await self.r.xack(stream, keys.GROUP, entry_id)

    async def _reclaim(self) -> None:
        for stream in self.streams:
            start = "0-0"
            for _ in range(10):  # bounded: at most 10 pages of pending entries per pass
                result = await self.r.xautoclaim(stream, keys.GROUP, self.consumer,
                                                 min_idle_time=self.retry_idle_ms,
                                                 start_id=start, count=self.batch_max)
                start, claimed = result[0], result[1]
                items = [(stream, eid, f) for eid, f in claimed if f is not None]
                if items:
                    log.info("event=reclaimed stage=%s stream=%s count=%s", self.name, stream,
                             len(items))
                    await self._handle_batch(items)
                if start in ("0-0", b"0-0"):
                    break


async def dead_letter(r: aioredis.Redis, stage: str, stream: str, entry_id: str,
                      fields: dict[str, str], reason: str, deliveries: int,
                      status: int | None, on_dead: DeadHook | None) -> str:
    """Write the dead letter of one piece of work, its work marked in the database
    first (`on_dead`); the letter's id. `stream` is the stream the work belongs to (an
    operator's retry puts the letter's fields back on it), `entry_id` the stream entry
    that carried it, empty for work that was never on a stream (a send straight after
    commit, gateway.direct)."""
    named = {}
    if on_dead is not None:
        named = await on_dead(stream, entry_id, fields, reason, status) or {}
    letter = await write_letter(r, stream, entry_id, fields, reason, str(deliveries), named)
    said = "".join(f" {k}={v}" for k, v in named.items())
    log.error("event=dead_lettered stage=%s stream=%s entry=%s letter=%s%s reason=%s",
              stage, stream, entry_id or "-", letter, said, reason[:200])
    return letter


async def write_letter(r: aioredis.Redis, stream: str, entry_id: str,
                       fields: dict[str, str], reason: str, deliveries: str,
                       named: dict[str, str]) -> str:
    """Add one letter to the dead-letter stream: the work's own fields, where it came
    from and why it died, and what names it (`payment`, `package`); its id. The work is
    marked dead in the database before, in its own commit, so a gateway stopping in
    between leaves it without a letter: start-up recovery writes that one
    (gateway.recovery.restore_letters)."""
    dead = dict(fields, stream=stream, entry=entry_id, reason=reason[:500],
                deliveries=deliveries, **named)
    return await r.xadd(keys.DEAD, dead)


async def trim_handled(r: aioredis.Redis, streams: tuple[str, ...]) -> int:
    """Remove the entries every consumer has acknowledged; how many went.

    An entry's work is recorded in the database before it is acknowledged, so an
    acknowledged entry is never needed again. Without this a stream keeps every entry
    it ever had: Redis grows for ever and its length (which the API's 429 check reads)
    stops meaning a backlog. Everything below the oldest pending entry, or below the
    last one delivered when none is pending, has been acknowledged (an entry is never
    pending again once acknowledged, and new entries come after the last delivered).
    The dead-letter stream is for operators and is never trimmed here.
    """
    removed = 0
    for stream in streams:
        if not await r.exists(stream):
            continue
        group = next((g for g in await r.xinfo_groups(stream) if g["name"] == keys.GROUP),
                     None)
        if group is None:
            continue
        floor = group["last-delivered-id"]
        if group["pending"]:
            # The oldest pending entry, read after the count: if it was acknowledged in
            # between, nothing is pending and the last delivered entry is the floor.
            floor = (await r.xpending(stream, keys.GROUP))["min"] or floor
        if not floor or floor in ("0-0", b"0-0"):
            continue
        removed += await r.xtrim(stream, minid=floor, approximate=False)
    return removed


def _flatten(got: list) -> list[tuple[str, str, dict[str, str]]]:
    out = []
    for stream, entries in got or []:
        for entry_id, fields in entries:
            out.append((stream, entry_id, fields))
    return out
