"""Pushing status changes to the core system's webhook.

Every state change of a payment (and the query and exception events of the extensions)
is put in the outbox in the transaction that makes it, and pushed after commit. One POST
carries a list of changes, always in the same shape, even for one:

    {"events": [{"id": "...", "state": "settled", "previous": "netted",
                 "event": "beps_settled", "at": "2026-12-07T09:30:02+00:00"}, ...]}

The changes committed in one transaction are told together: a package's payments sent,
netted or settled together, and the single HVPS changes of one group commit, are written
as a few outbox rows (gateway.payments), and rows ready to push at the same moment share a
POST: at most `webhook_events_max` events in one, and no wait for more when one row alone
is ready.

The body is signed with HMAC-SHA256 under `webhook_secret` in the header
`X-Paygate-Signature: sha256=<hex>`, over the whole body. A 2xx answer acknowledges
every event in it. When the core system does not answer 2xx, every row of the POST is
retried with doubling backoff (`send_backoff_s` × 2^attempt, capped at 5 minutes) up to
`webhook_retries_max` attempts, each retry carrying the same events (possibly beside
others ready then); then the row is marked failed and an operator alert raised. Changes
may arrive out of order after a retry, and an event may arrive twice (a POST answered
2xx whose answer was lost): each carries its time (`at`) and the state it left
(`previous`); polling `GET /v1/transfers/{id}` always gives the current state.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import orjson

from gateway import logs, outbound
from gateway.batcher import Batcher
from gateway.store import log_after_commit
from gateway.worker import RetryLater

log = logging.getLogger("paygate.webhook")

BACKOFF_MAX_S = 300.0


class RowsRetryLater(RetryLater):
    """A POST not answered 2xx: `rows` (outbox ids) wait out their backoff and are
    pushed again; the POST's other rows were failed (past their attempts)."""

    def __init__(self, reason: str, rows: frozenset[int]) -> None:
        super().__init__(reason)
        self.rows = rows


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Hook:
    """A claimed webhook row: its id, its events (a JSON array), how many they are, and
    the attempts to push it made so far."""

    outbox_id: int
    events: bytes
    count: int
    attempts: int = 0


def body_of(hooks: list[Hook]) -> bytes:
    """The POST body carrying the events of these rows, in their order."""
    return b'{"events":[' + b",".join(hook.events[1:-1] for hook in hooks) + b"]}"


def bundles(hooks: list[Hook], events_max: int) -> list[list[Hook]]:
    """The rows in order, cut into POSTs of at most `events_max` events (a row is never
    split: none holds more, gateway.payments)."""
    cut: list[list[Hook]] = []
    count = 0
    for hook in hooks:
        if not cut or count + hook.count > events_max:
            cut.append([])
            count = 0
        cut[-1].append(hook)
        count += hook.count
    return cut


def stored_events(envelope: bytes) -> tuple[bytes, int]:
    """A webhook row's events and their number. Rows written before a POST carried a
    list held one event object: it is read as a list of one."""
    events = bytes(envelope)
    if events[:1] == b"{":
        return b"[" + events + b"]", 1
    return events, len(orjson.loads(events))


class Pusher:
    """Pushes webhook rows; the claims and the marks of delivery of pushes running at
    the same moment are each written as one piece of store work (gateway.batcher), and
    the rows claimed together go in as few POSTs as the bound allows."""

    def __init__(self, gw: Any) -> None:
        self.gw = gw
        self._claim = Batcher(gw.store, _claim_many)
        self._delivered = Batcher(gw.store, _delivered_many)
        self._ready: list[tuple[Hook, asyncio.Future]] = []
        self._posts: set[asyncio.Task] = set()
        self.posts = 0

    async def push(self, outbox_id: int) -> None:
        """Deliver one webhook outbox row, with the others claimed at the same moment, or
        schedule its retry (RetryLater)."""
        gw = self.gw
        if not gw.settings.webhook_url:
            return
        claimed = await self._claim((outbox_id, gw.clock.now()))
        if claimed is None:
            return
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._ready.append((claimed, future))
        if len(self._ready) == 1:
            # The claims of one batch come back in one loop turn: post them together.
            loop.call_soon(self._post_ready)
        await future

    def _post_ready(self) -> None:
        ready, self._ready = self._ready, []
        futures = iter([future for _, future in ready])
        for bundle in bundles([hook for hook, _ in ready], self.gw.settings.webhook_events_max):
            theirs = [(hook, next(futures)) for hook in bundle]  # bundles keep the order
            task = asyncio.get_running_loop().create_task(self.deliver(bundle))
            self._posts.add(task)
            task.add_done_callback(lambda done, theirs=theirs: self._posted(done, theirs))

    def _posted(self, done: asyncio.Task,
                rows: list[tuple[Hook, asyncio.Future]]) -> None:
        self._posts.discard(done)
        error = asyncio.CancelledError() if done.cancelled() else done.exception()
        for hook, future in rows:
            if future.done():
                continue
            if isinstance(error, RowsRetryLater) and hook.outbox_id not in error.rows:
                future.set_result(None)  # failed, with its alert: no retry to tell of
            elif error is not None:
                future.set_exception(error)
            else:
                future.set_result(None)

    async def deliver(self, hooks: list[Hook]) -> None:
        """POST claimed webhook rows' events in one body; mark the rows delivered, or
        schedule their retry (RowsRetryLater naming the rows retried; a row past its
        attempts is failed instead, with its alert, and never said to be retried)."""
        gw = self.gw
        body = body_of(hooks)
        self.posts += 1
        try:
            async with gw.http.post(gw.settings.webhook_url, data=body, headers={
                    "Content-Type": "application/json",
                    "X-Paygate-Signature": signature(gw.settings.webhook_secret, body)}) as r:
                ok = r.status < 300
                status = r.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            ok, status = False, repr(exc)[:120]
        if ok:
            await self._delivered((tuple(hook.outbox_id for hook in hooks), gw.clock.now()))
            return
        retried = await gw.store.run(lambda tx: _schedule_retries(gw, tx, hooks, status))
        if retried:
            raise RowsRetryLater(f"webhook answered {status}", retried)


def _claim_many(tx: Any, calls: list[tuple[int, datetime]]) -> list[Hook | None]:
    """Claim each (outbox id, now) for pushing: the row, or None when it is not pending,
    waits out a retry's backoff, or another process has it."""
    return [_claim(tx, outbox_id, now) for outbox_id, now in calls]


def _claim(tx: Any, outbox_id: int, now: datetime) -> Hook | None:
    row = tx.query_one("SELECT state, envelope, attempts, updated_at FROM outbox "
                       "WHERE id = ?", (outbox_id,))
    if row is None or row[0] != "pending":
        return None
    if datetime.fromisoformat(row[3]) > now:  # a retry scheduled for later
        return None
    # Conditional: of two gateway processes, one pushes.
    if not outbound.take(tx, outbox_id, now, count_attempt=False):
        return None
    return Hook(outbox_id, *stored_events(row[1]), attempts=row[2])


def _delivered_many(tx: Any, calls: list[tuple[tuple[int, ...], datetime]]) -> list[None]:
    """Mark the rows of each (outbox ids, time) delivered."""
    tx.executemany("UPDATE outbox SET state = 'done', attempts = attempts + 1, updated_at = ? "
                   "WHERE id = ?", [(at.isoformat(), outbox_id)
                                    for outbox_ids, at in calls for outbox_id in outbox_ids])
    return [None] * len(calls)


def _schedule_retries(gw: Any, tx: Any, hooks: list[Hook], status: Any) -> frozenset[int]:
    """Every row of a POST not answered 2xx waits out its backoff before it is pushed
    again, its events as they are; past `webhook_retries_max` attempts it is failed. The
    rows to be retried. Each row's fate is logged once the transaction commits, before
    anything tells of a retry (the stage's `retry_later` for the rows retried only)."""
    return frozenset(hook.outbox_id for hook in hooks if _schedule_retry(gw, tx, hook, status))


def _schedule_retry(gw: Any, tx: Any, hook: Hook, status: Any) -> bool:
    """Whether the row is to be retried (else it is failed now)."""
    attempts = hook.attempts + 1
    if attempts >= gw.settings.webhook_retries_max:
        tx.execute("UPDATE outbox SET state = 'failed', attempts = ?, updated_at = ? "
                   "WHERE id = ?", (attempts, gw.clock.now().isoformat(), hook.outbox_id))
        gw.alert(tx, "webhook_delivery_failed", outbox=hook.outbox_id, events=hook.count,
                 attempts=attempts, last_answer=status)
        return False
    delay_s = min(gw.settings.send_backoff_s * 2 ** attempts, BACKOFF_MAX_S)
    # The sweeper re-drives rows untouched for a few seconds; a future updated_at keeps
    # this one waiting out its backoff first.
    retry_at = gw.clock.now() + timedelta(seconds=delay_s)
    tx.execute("UPDATE outbox SET state = 'pending', attempts = ?, updated_at = ? "
               "WHERE id = ?", (attempts, retry_at.isoformat(), hook.outbox_id))
    log_after_commit(log, logging.INFO, [
        f"event=webhook_retry_scheduled outbox={hook.outbox_id} events={hook.count} "
        f"attempts={attempts} delay_s={delay_s} answer={logs.value(status)}"])
    return True
