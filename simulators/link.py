"""Delivery of the NPC's outbox: one worker per destination, in outbox order.

External banks are reached by HTTP POST to their inbound URL; a 2xx means the bank took
it. A worker delivers in rounds: the messages due when a round starts go in as few
POSTs as `batch_max` and `batch_bytes_max` allow (several envelopes framed in one POST,
gateway.messages.framing; one alone goes unframed), and those that become due during
the round wait for the next one, with no timer. Each envelope's answer is acted on alone.
A bank may give several inbound URLs (its gateway processes, `--bank CODE=URL1,URL2`):
each try takes them in turn, and one that cannot be reached or answers 5xx is tried at
once on the next, so a bank with one gateway down still gets everything without waiting
for a retry. A 4xx is a refusal and is not retried.

Each message has a retry schedule of its own. One the bank did not take (a connection
error, a timeout, a 5xx) stays pending and is due again after a pause that doubles from
`backoff_s` up to `backoff_max_s` (30 s), for `retry_for_s` seconds (10 minutes) from its
first try, or `attempts_max` tries when that is set: a bank whose gateway answers 503
until our key is installed there, or that restarts, gets its messages once it takes
them. Meanwhile the bank's later messages go on in their rounds: one message the bank
cannot take now holds up no other, except the later messages of its chain, which must
reach the bank in the order made (simulators.notices: the system status notices, the
results about one message) and wait until it has been delivered, refused or given up.
The messages due again together go together. Each pause is logged
(`delivery_retry_scheduled`, with the last answer), and `POST /sim/redeliver` makes every
waiting message due at once. After its last try a message is marked undelivered, logged
(`delivery_given_up`), and kept for `POST /sim/redeliver`. A worker sends up to
`parallel_max` POSTs at a time and records how their messages ended (or when each is due
again) in one commit; a crash before it only means they are sent again, which a bank
recognises as duplicates. The schedule is of this process's clock: at a start every
pending message is due at once, its retries begun again.

Simulated peer banks are handed their messages in-process, up to `LOCAL_BATCH_MAX` at a
time in one transaction that also takes what the peer answers. Faults (faults.py) apply
only to external banks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import aiohttp

from gateway.clock import Clock
from gateway.messages import ccms900, framing
from simulators.faults import FaultState
from simulators.logfmt import event
from simulators.settings import Delivery
from simulators.store import (DROPPED, LOST, PENDING, REFUSED, SENT, UNDELIVERED, OutboxRow,
                              Store)

log = logging.getLogger("npc.link")

LocalHandler = Callable[[bytes], None]
_OK, _RETRY, _REFUSED = "ok", "retry", "refused"
# Messages handed to a simulated peer in one transaction: what the peer answers is taken
# by the NPC in that same transaction, so a busy peer costs one commit per batch.
LOCAL_BATCH_MAX = 64
_POST_HEADERS = {"Content-Type": "application/octet-stream"}


def _type_counts(rows: list[OutboxRow]) -> str:
    """The message types of some rows with how many of each, in order of first sight:
    "ccms.990.001.02:15,ccms.900.001.01:15"."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.mesg_type] = counts.get(row.mesg_type, 0) + 1
    return ",".join(f"{mtype}:{n}" for mtype, n in counts.items())


def retry_pause(delivery: Delivery, attempt: int, retrying_s: float) -> float | None:
    """The pause before trying again messages a bank did not take at try `attempt`,
    `retrying_s` seconds after their first try: `backoff_s` doubled at each try up to
    `backoff_max_s`; None once the next try would come after `retry_for_s` (or
    `attempts_max` tries were made, when set): they are given up."""
    pause_s = min(delivery.backoff_s * 2 ** min(attempt - 1, 64), delivery.backoff_max_s)
    if (delivery.attempts_max and attempt >= delivery.attempts_max) or \
            retrying_s + pause_s > delivery.retry_for_s:
        return None
    return pause_s


@dataclass
class _Worker:
    dest: str
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    # Nothing to deliver now and no message waiting for a later try (drain waits for it).
    idle: bool = False
    task: asyncio.Task | None = None


class _Ended(NamedTuple):
    """How one try of a message ended: its final state, or PENDING with when it is due
    again (`retry_at`), its `tries` since its retries began at `since`."""

    seq: int
    state: str
    attempts: int  # tries in all, this one included
    tries: int = 0
    since: float = 0.0
    retry_at: float | None = None
    pause_s: float = 0.0  # the pause before `retry_at`


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
        self.posts = 0      # POSTs to external banks, every attempt counted
        self.envelopes = 0  # envelopes they carried

    def add_local(self, code: str, handler: LocalHandler) -> None:
        self.local[code] = handler

    async def start(self) -> None:
        with self.store.transaction():
            self.store.retry_now(restart=True)  # the times kept are of the process before
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

    def _next_rows(self, dest: str, now_s: float) -> list[OutboxRow]:
        if dest in self.banks and self.faults.faults.offline:
            return []
        if dest in self.banks and self.faults.faults.reorder:
            rows = self.store.due(dest, self.delivery.reorder_window, now_s)
            self.faults.rng.shuffle(rows)
            return rows
        if dest in self.banks:
            delivery = self.delivery
            return self.store.due(dest, max(1, delivery.parallel_max) * delivery.batch_max,
                                  now_s)
        return self.store.due(dest, LOCAL_BATCH_MAX, now_s)

    async def _run(self, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        while True:
            rows = self._next_rows(worker.dest, loop.time())
            if not rows:
                await self._wait(worker)
                continue
            worker.idle = False
            handler = self.local.get(worker.dest)
            if handler is not None:
                self._hand_over(handler, rows)
                continue
            if not self.faults.faults.reorder:
                rounds = await asyncio.gather(*(self._deliver(worker.dest, posted)
                                                for posted in self._posts(rows)))
                ends = [end for done in rounds for end in done]
            else:  # one at a time, in the shuffled order
                ends = [end for row in rows for end in await self._deliver(worker.dest, [row])]
            self._mark(ends)

    async def _wait(self, worker: _Worker) -> None:
        """Nothing is due: wait for a new message (or a redelivery, a fault changed) or,
        when messages wait for a later try, until the first of them is due. The worker
        is idle only when none waits (an offline bank's messages wait for it to be back
        online, and count as none)."""
        offline = worker.dest in self.banks and self.faults.faults.offline
        retry_at = None if offline else self.store.next_retry_at(worker.dest)
        worker.idle = retry_at is None
        if worker.idle:
            self._changed.set()
        pause_s = None if retry_at is None else \
            max(0.0, retry_at - asyncio.get_running_loop().time())
        try:
            await asyncio.wait_for(worker.wakeup.wait(), pause_s)
        except asyncio.TimeoutError:
            pass
        worker.wakeup.clear()

    def _posts(self, rows: list[OutboxRow]) -> list[list[OutboxRow]]:
        """The round's messages cut into POSTs, in outbox order: as full as
        `delivery.batch_max` and `delivery.batch_bytes_max` allow (one message larger than
        the bytes bound goes alone)."""
        posts: list[list[OutboxRow]] = []
        size = 0
        for row in rows:
            if not posts or len(posts[-1]) >= self.delivery.batch_max or \
                    size + len(row.raw) > self.delivery.batch_bytes_max:
                posts.append([])
                size = 0
            posts[-1].append(row)
            size += len(row.raw)
        return posts

    def _hand_over(self, handler: LocalHandler, rows: list[OutboxRow]) -> None:
        """Give a simulated peer its messages; the marks and whatever the peer answers
        commit together."""
        with self.store.transaction():
            self.store.mark_many([(row.seq, SENT, row.attempts + 1) for row in rows],
                                 self._now())
            for row in rows:
                handler(row.raw)

    def _mark(self, ends: list[_Ended]) -> None:
        """Record how the tries of one round ended, in one commit."""
        now = self._now()
        with self.store.transaction():
            self.store.mark_many([(end.seq, end.state, end.attempts) for end in ends
                                  if end.retry_at is None], now)
            for end in ends:
                if end.retry_at is not None:
                    self.store.retry_later(end.seq, end.attempts, now, end.tries, end.since,
                                           end.retry_at)

    async def _deliver(self, dest: str, rows: list[OutboxRow]) -> list[_Ended]:
        """Try messages to a bank in one POST (those a fault keeps back aside); how each
        try ended."""
        ends, send = [], []
        for row in rows:
            state = self._fault_instead_of_sending(row)
            if state is None:
                send.append(row)
            else:
                ends.append(_Ended(row.seq, state, row.attempts))
        if not send:
            return ends
        if self.faults.faults.delay_ms:
            await asyncio.sleep(self.faults.faults.delay_ms / 1000)
        loop = asyncio.get_running_loop()
        began = loop.time()
        outcomes, last = await self._try(dest, send)
        tried = [self._ended(row, outcome, began, loop.time())
                 for row, outcome in zip(send, outcomes)]
        self._log_tries(dest, send, tried, began, last)
        ends.extend(tried)
        again = [row for row, end in zip(send, tried)
                 if end.state == SENT and self.faults.draw(self.faults.faults.duplicate)]
        if again:
            duplicated, _ = await self._post_once(self._in_turn(dest)[0], again)
            for row, outcome in zip(again, duplicated):
                event(log, "fault_duplicate_sent", logging.WARNING, dest=dest,
                      mesg_id=row.mesg_id, outcome=outcome)
        return ends

    def _ended(self, row: OutboxRow, outcome: str, began: float, now: float) -> _Ended:
        """A message's try ended with `outcome`: delivered, refused, due again after its
        pause, or given up (undelivered) when its retries are over."""
        attempts = row.attempts + 1
        if outcome == _OK:
            return _Ended(row.seq, SENT, attempts)
        if outcome == _REFUSED:
            return _Ended(row.seq, REFUSED, attempts)
        since = began if row.retry_since is None else row.retry_since
        tries = row.tries + 1
        pause_s = retry_pause(self.delivery, tries, now - since)
        if pause_s is None:
            return _Ended(row.seq, UNDELIVERED, attempts, tries, since)
        return _Ended(row.seq, PENDING, attempts, tries, since, now + pause_s, pause_s)

    def _log_tries(self, dest: str, rows: list[OutboxRow], ends: list[_Ended], began: float,
                   last: str) -> None:
        """One line for the messages of the POST the bank took (their MesgIDs in outbox
        order), and one for each it refused or gave up; one for the messages due again
        after the same try and pause, and one for those given up."""
        waiting: dict[tuple[int, float], list[_Ended]] = {}
        given_up: list[_Ended] = []
        sent: list[OutboxRow] = []
        for row, end in zip(rows, ends):
            if end.retry_at is not None:
                waiting.setdefault((end.tries, end.pause_s), []).append(end)
                continue
            if end.state == SENT:
                sent.append(row)
                continue
            if end.state == UNDELIVERED:
                given_up.append(end)
            event(log, "delivery_" + end.state, logging.WARNING, dest=dest,
                  mesg_type=row.mesg_type, mesg_id=row.mesg_id, attempts=row.tries + 1,
                  posted_with=len(rows))
        if sent:
            # One line a POST, not one a message: under load a POST carries tens of
            # them, and a line costs about as much as a message's outbox row.
            event(log, "delivery_sent", dest=dest, messages=len(sent),
                  mesg_types=_type_counts(sent), attempts=max(r.tries for r in sent) + 1,
                  posted_with=len(rows), mesg_ids=",".join(r.mesg_id for r in sent))
        for (tries, pause_s), same in waiting.items():
            event(log, "delivery_retry_scheduled", logging.WARNING, dest=dest,
                  messages=len(same), attempt=tries, pause_s=round(pause_s, 3),
                  retrying_for_s=round(max(began - e.since for e in same), 1),
                  retry_for_s=self.delivery.retry_for_s, last=last)
        if given_up:
            event(log, "delivery_given_up", logging.WARNING, dest=dest,
                  messages=len(given_up), attempts=max(e.tries for e in given_up),
                  retried_for_s=round(max(began - e.since for e in given_up), 1), last=last)

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

    async def _try(self, dest: str, rows: list[OutboxRow]) -> tuple[list[str], str]:
        """One try of these messages: POSTed to the bank's URLs in turn until each is
        taken or refused; each one's outcome (taken, refused, or to try again), and the
        last reason given for not taking one now."""
        outcome = {row.seq: _RETRY for row in rows}
        left, last = rows, ""
        for url in self._in_turn(dest):
            outcomes, why = await self._post_once(url, left)
            last = why or last
            for row, got in zip(left, outcomes):
                outcome[row.seq] = got
            left = [row for row, got in zip(left, outcomes) if got == _RETRY]
            if not left:
                break
        return [outcome[row.seq] for row in rows], last

    async def _post_once(self, url: str, rows: list[OutboxRow]) -> tuple[list[str], str]:
        """One POST of these messages (framed when several); each one's outcome, and
        why those not taken now were not (empty when all were taken or refused). Each
        message's failure is logged at its first try; a retry's, in the retry's line."""
        assert self._session is not None, "the link is started before it delivers"
        body, headers = framing.frame([row.raw for row in rows])
        self.posts += 1
        self.envelopes += len(rows)
        try:
            async with self._session.post(url, data=body,
                                          headers={**_POST_HEADERS, **headers}) as response:
                answer = await response.read()
                status = response.status
            statuses = framing.statuses(status, answer, len(rows))
        except (TimeoutError, aiohttp.ClientError, OSError, framing.AnswerUnreadable) as exc:
            why = f"{type(exc).__name__}: {str(exc)[:160]}"
            for row in rows:
                if row.tries:
                    continue
                event(log, "delivery_attempt_failed", logging.WARNING, dest=row.dest,
                      mesg_id=row.mesg_id, error=type(exc).__name__, detail=str(exc)[:200])
            return [_RETRY] * len(rows), why
        outcomes, why = [], ""
        for row, status in zip(rows, statuses):
            if 200 <= status < 300:
                outcomes.append(_OK)
                continue
            if not row.tries or status < 500:
                event(log, "delivery_answered_error", logging.WARNING, dest=row.dest,
                      mesg_id=row.mesg_id, status=status)
            if status >= 500:
                why = f"answered {status}"
            outcomes.append(_RETRY if status >= 500 else _REFUSED)
        return outcomes, why

    def redeliver(self, include_faulted: bool) -> list[str]:
        """Put undelivered and refused (and, when asked, dropped and lost) messages back
        in line, their retries to begin again; those waiting for a later try are due at
        once. The destinations of the first."""
        states = (UNDELIVERED, REFUSED) + ((DROPPED, LOST) if include_faulted else ())
        with self.store.transaction():
            dests = self.store.reset(states, self._now())
            waiting = self.store.retry_now()
        for dest in sorted({*dests, *waiting}):
            self.wake(dest)
        return dests
