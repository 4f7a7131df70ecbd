"""Pushing status changes to the core system's webhook.

Every state change of a payment (and the query and exception events of the extensions)
is put in the outbox in the transaction that makes it, and added to the webhook stream
after commit. The body is JSON signed with HMAC-SHA256 under `webhook_secret` in the
header `X-Paygate-Signature: sha256=<hex>`. When the core system does not answer 2xx the
push is retried with doubling backoff (`send_backoff_s` × 2^attempt, capped at 5
minutes) up to `webhook_retries_max` attempts; then the row is marked failed and an
operator alert raised. Changes may arrive out of order after a retry: each carries its
time (`at`) and the state it left (`previous`); polling `GET /v1/transfers/{id}` always
gives the current state.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from gateway import outbound
from gateway.batcher import Batcher
from gateway.worker import RetryLater

log = logging.getLogger("paygate.webhook")

BACKOFF_MAX_S = 300.0


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Pusher:
    """Pushes webhook rows; the claims and the marks of delivery of pushes running at
    the same moment are each written as one piece of store work (gateway.batcher)."""

    def __init__(self, gw: Any) -> None:
        self.gw = gw
        self._claim = Batcher(gw.store, _claim_many)
        self._delivered = Batcher(gw.store, _delivered_many)

    async def push(self, outbox_id: int) -> None:
        """Deliver one webhook outbox row, or schedule its retry."""
        gw = self.gw
        if not gw.settings.webhook_url:
            return
        claimed = await self._claim((outbox_id, gw.clock.now()))
        if claimed is None:
            return
        await self.deliver(outbox_id, *claimed)

    async def deliver(self, outbox_id: int, body: bytes, attempts: int) -> None:
        """POST a claimed webhook row's body; mark it delivered, or schedule its retry."""
        gw = self.gw
        try:
            async with gw.http.post(gw.settings.webhook_url, data=body, headers={
                    "Content-Type": "application/json",
                    "X-Paygate-Signature": signature(gw.settings.webhook_secret, body)}) as r:
                ok = r.status < 300
                status = r.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            ok, status = False, repr(exc)[:120]
        if ok:
            await self._delivered((outbox_id, gw.clock.now()))
            return
        await gw.store.run(lambda tx: _schedule_retry(gw, tx, outbox_id, attempts, status))
        raise RetryLater(f"webhook answered {status}")


def _claim_many(tx: Any, calls: list[tuple[int, datetime]]
                ) -> list[tuple[bytes, int] | None]:
    """Claim each (outbox id, now) for pushing: its (body, attempts so far), or None when
    the row is not pending, waits out a retry's backoff, or another process has it."""
    return [_claim(tx, outbox_id, now) for outbox_id, now in calls]


def _claim(tx: Any, outbox_id: int, now: datetime) -> tuple[bytes, int] | None:
    row = tx.query_one("SELECT state, envelope, attempts, updated_at FROM outbox "
                       "WHERE id = ?", (outbox_id,))
    if row is None or row[0] != "pending":
        return None
    if datetime.fromisoformat(row[3]) > now:  # a retry scheduled for later
        return None
    # Conditional: of two gateway processes, one pushes.
    if not outbound.take(tx, outbox_id, now, count_attempt=False):
        return None
    return bytes(row[1]), row[2]


def _delivered_many(tx: Any, calls: list[tuple[int, datetime]]) -> list[None]:
    """Mark each (outbox id, time) delivered."""
    tx.executemany("UPDATE outbox SET state = 'done', attempts = attempts + 1, updated_at = ? "
                   "WHERE id = ?", [(at.isoformat(), outbox_id) for outbox_id, at in calls])
    return [None] * len(calls)


def _schedule_retry(gw: Any, tx: Any, outbox_id: int, attempts: int, status: Any) -> None:
    attempts += 1
    if attempts >= gw.settings.webhook_retries_max:
        tx.execute("UPDATE outbox SET state = 'failed', attempts = ?, updated_at = ? "
                   "WHERE id = ?", (attempts, gw.clock.now().isoformat(), outbox_id))
        gw.alert(tx, "webhook_delivery_failed", outbox=outbox_id, attempts=attempts,
                 last_answer=status)
        return
    delay_s = min(gw.settings.send_backoff_s * 2 ** attempts, BACKOFF_MAX_S)
    # The sweeper re-drives rows untouched for a few seconds; a future updated_at keeps
    # this one waiting out its backoff first.
    retry_at = gw.clock.now() + timedelta(seconds=delay_s)
    tx.execute("UPDATE outbox SET state = 'pending', attempts = ?, updated_at = ? "
               "WHERE id = ?", (attempts, retry_at.isoformat(), outbox_id))
    log.info("event=webhook_retry_scheduled outbox=%s attempts=%s delay_s=%s answer=%s",
             outbox_id, attempts, delay_s, status)
