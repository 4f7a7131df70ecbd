"""Delivery of the NPC's outbox: one worker per destination, in outbox order.

External banks are reached by HTTP POST of the envelope to their inbound URL; a 2xx
means the bank took it. A bank may give several inbound URLs (its gateway processes,
`--bank CODE=URL1,URL2`): deliveries take them in turn, and one that cannot be reached
or answers 5xx is tried at once on the next, so a bank with one gateway down still gets
everything without waiting for a retry. Connection errors, timeouts and 5xx
answers are retried with a doubling backoff up to `attempts_max` tries; then the message
is marked undelivered, logged, and kept for `POST /sim/redeliver`. A 4xx is a refusal
and is not retried. A worker sends up to `parallel_max` messages at a time and records
how they ended in one commit; a crash before it only means they are sent again, which a
bank recognises as duplicates.

Simulated peer banks are handed their messages in-process, up to `LOCAL_BATCH_MAX` at a
time in one transaction that also takes what the peer answers. Faults (faults.py) apply
only to external banks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from gateway.clock import Clock
from gateway.messages import ccms900
from simulators.faults import FaultState
from simulators.logfmt import event
from simulators.settings import Delivery
from simulators.store import DROPPED, LOST, REFUSED, SENT, UNDELIVERED, OutboxRow, Store

log = logging.getLogger("npc.link")

LocalHandler = Callable[[bytes], None]
_OK, _RETRY, _REFUSED = "ok", "retry", "refused"
# Messages handed to a simulated peer in one transaction: what the peer answers is taken
# by the NPC in that same transaction, so a busy peer costs one commit per batch.
LOCAL_BATCH_MAX = 64
_POST_HEADERS = {"Content-Type": "application/octet-stream"}


@dataclass
class _Worker:
    dest: str
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    idle: bool = False
    task: asyncio.Task | None = None


class Link:
    def __init__(self, store: Store, clock: Clock, banks: dict[str, str], delivery: Delivery,
                 faults: FaultState) -> None:
        self.store = store
        self.clock = clock
        self.banks = dict(banks)
        self.urls = {code: [u.strip() for u in url.split(",") if u.strip()]
                     for code, url in banks.items()}
        self._turn: dict[str, int] = {}
        self.delivery = delivery
        self.faults = faults
        self.local: dict[str, LocalHandler] = {}
        self._workers: dict[str, _Worker] = {}
        self._changed = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None

    def add_local(self, code: str, handler: LocalHandler) -> None:
        self.local[code] = handler

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.delivery.timeout_s)
        # No bank sets cookies on the link: a jar that keeps none spares every POST a
        # look-up in it.
        self._session = aiohttp.ClientSession(timeout=timeout,
                                              cookie_jar=aiohttp.DummyCookieJar())
        for dest in [*self.banks, *self.local]:
            worker = _Worker(dest)
            self._workers[dest] = worker
            worker.task = asyncio.create_task(self._run(worker), name=f"deliver-{dest}")
            worker.task.add_done_callback(self._worker_ended)

    async def stop(self) -> None:
        for worker in self._workers.values():
            if worker.task is not None:
                worker.task.cancel()
        await asyncio.gather(*(w.task for w in self._workers.values() if w.task),
                             return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def _worker_ended(self, task: asyncio.Task) -> None:
        # A worker only ends when stopped; anything else is a bug that would silently halt
        # a destination's deliveries, so it is logged loudly with its traceback.
        if not task.cancelled() and task.exception() is not None:
            event(log, "delivery_worker_failed", logging.ERROR, exc_info=task.exception(),
                  worker=task.get_name())

    def wake(self, dest: str) -> None:
        worker = self._workers.get(dest)
        if worker is not None:
            worker.idle = False
            worker.wakeup.set()

    def wake_all(self) -> None:
        for dest in self._workers:
            self.wake(dest)

    async def drain(self) -> None:
        """Wait until every worker has nothing it can deliver now (offline banks wait)."""
        while not all(w.idle for w in self._workers.values()):
            self._changed.clear()
            await self._changed.wait()

    def _now(self) -> str:
        return self.clock.now().isoformat()

    def _next_rows(self, dest: str) -> list[OutboxRow]:
        if dest in self.banks and self.faults.faults.offline:
            return []
        if dest in self.banks and self.faults.faults.reorder:
            rows = self.store.pending(dest, self.delivery.reorder_window)
            self.faults.rng.shuffle(rows)
            return rows
        if dest in self.banks:
            return self.store.pending(dest, max(1, self.delivery.parallel_max))
        return self.store.pending(dest, LOCAL_BATCH_MAX)

    async def _run(self, worker: _Worker) -> None:
        while True:
            rows = self._next_rows(worker.dest)
            if not rows:
                worker.idle = True
                self._changed.set()
                await worker.wakeup.wait()
                worker.wakeup.clear()
                continue
            worker.idle = False
            handler = self.local.get(worker.dest)
            if handler is not None:
                self._hand_over(handler, rows)
                continue
            if not self.faults.faults.reorder:
                marks = await asyncio.gather(*(self._deliver(worker.dest, row)
                                               for row in rows))
            else:
                marks = [await self._deliver(worker.dest, row) for row in rows]
            self._mark(marks)

    def _hand_over(self, handler: LocalHandler, rows: list[OutboxRow]) -> None:
        """Give a simulated peer its messages; the marks and whatever the peer answers
        commit together."""
        with self.store.transaction():
            for row in rows:
                self.store.mark(row.seq, SENT, row.attempts + 1, self._now())
                handler(row.raw)

    def _mark(self, marks: list[tuple[int, str, int]]) -> None:
        """Record how the deliveries of one round ended, in one commit."""
        now = self._now()
        with self.store.transaction():
            for seq, state, attempts in marks:
                self.store.mark(seq, state, attempts, now)

    async def _deliver(self, dest: str, row: OutboxRow) -> tuple[int, str, int]:
        """Send one message to a bank; (outbox seq, final state, attempts so far)."""
        state = self._fault_instead_of_sending(row)
        if state is not None:
            return row.seq, state, row.attempts
        if self.faults.faults.delay_ms:
            await asyncio.sleep(self.faults.faults.delay_ms / 1000)
        state, attempts = await self._post(dest, row)
        event(log, "delivery_" + state, logging.INFO if state == SENT else logging.WARNING,
              dest=dest, mesg_type=row.mesg_type, mesg_id=row.mesg_id, attempts=attempts)
        if state == SENT and self.faults.draw(self.faults.faults.duplicate):
            outcome = await self._post_once(self._in_turn(dest)[0], row)
            event(log, "fault_duplicate_sent", logging.WARNING, dest=dest,
                  mesg_id=row.mesg_id, outcome=outcome)
        return row.seq, state, row.attempts + attempts

    def _fault_instead_of_sending(self, row: OutboxRow) -> str | None:
        if row.mesg_type == ccms900.MESSAGE_TYPE and self.faults.take_lost_result():
            event(log, "fault_result_lost", logging.WARNING, dest=row.dest,
                  mesg_id=row.mesg_id, left=self.faults.faults.lose_result)
            return LOST
        if self.faults.draw(self.faults.faults.drop):
            event(log, "fault_dropped", logging.WARNING, dest=row.dest,
                  mesg_type=row.mesg_type, mesg_id=row.mesg_id)
            return DROPPED
        return None

    def _in_turn(self, dest: str) -> list[str]:
        """The bank's inbound URLs, starting with the one whose turn it is."""
        urls = self.urls[dest]
        turn = self._turn.get(dest, 0) % len(urls)
        self._turn[dest] = turn + 1
        return urls[turn:] + urls[:turn]

    async def _post(self, dest: str, row: OutboxRow) -> tuple[str, int]:
        """POST with bounded retries; (final state, attempts made). An attempt goes to
        the bank's URLs in turn until one takes the message or refuses it."""
        for attempt in range(1, self.delivery.attempts_max + 1):
            for url in self._in_turn(dest):
                outcome = await self._post_once(url, row)
                if outcome != _RETRY:
                    break
            if outcome == _OK:
                return SENT, attempt
            if outcome == _REFUSED:
                return REFUSED, attempt
            if attempt < self.delivery.attempts_max:
                backoff_s = self.delivery.backoff_s * 2 ** (attempt - 1)
                await asyncio.sleep(min(backoff_s, self.delivery.backoff_max_s))
        return UNDELIVERED, self.delivery.attempts_max

    async def _post_once(self, url: str, row: OutboxRow) -> str:
        assert self._session is not None, "the link is started before it delivers"
        try:
            async with self._session.post(url, data=row.raw,
                                          headers=_POST_HEADERS) as response:
                await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            event(log, "delivery_attempt_failed", logging.WARNING, dest=row.dest,
                  mesg_id=row.mesg_id, error=type(exc).__name__, detail=str(exc)[:200])
            return _RETRY
        if 200 <= status < 300:
            return _OK
        event(log, "delivery_answered_error", logging.WARNING, dest=row.dest,
              mesg_id=row.mesg_id, status=status)
        return _RETRY if status >= 500 else _REFUSED

    def redeliver(self, include_faulted: bool) -> list[str]:
        """Put undelivered (and, when asked, dropped and lost) messages back in line."""
        states = (UNDELIVERED, REFUSED) + ((DROPPED, LOST) if include_faulted else ())
        with self.store.transaction():
            dests = self.store.reset(states, self._now())
        for dest in dests:
            self.wake(dest)
        return dests
