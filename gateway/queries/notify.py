"""Telling the core system about queries: webhook rows in the outbox, and the feeds.

When a webhook is configured, every event below is added to the outbox in the same
transaction as the change it reports, and the gateway's webhook worker POSTs it (signed,
retried) like a payment's status change, as one of the POST's `events` (gateway.webhook):

    {"events": [{"kind": "query", "event": "query_replied", "at": "...", "query": {...},
                 "reply": {...}}]}

Events: `query_received` (a bank asks us), `query_replied` (a bank answered ours),
`query_refused` (the NPC refused ours), `query_reply_refused` (the NPC refused our reply
to a bank's query, which is open again), `free_format_received`, `free_format_refused`
(the NPC refused ours). Without a webhook the core system polls
`GET /v1/query-replies?after=<seq>` (replies and refusals) and
`GET /v1/free-format?after=<seq>` (a refused message comes again there, refused)
(docs/queries.md).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from gateway import keys

EVENTS = ("query_received", "query_replied", "query_refused", "query_reply_refused",
          "free_format_received", "free_format_refused")


def queue_webhook(tx: Any, gw: Any, event: str, now: datetime, payment_id: str | None,
                  **payload: Any) -> tuple[str, int] | None:
    """Add one webhook event to the outbox; None when no webhook is configured."""
    assert event in EVENTS, event
    if not gw.notifier.webhook:
        return None
    at = now.isoformat()
    # The row holds a list of events, as every webhook row does (gateway.payments).
    body = json.dumps([{"kind": "query", "event": event, "at": at, **payload}],
                      ensure_ascii=False, default=str)
    row = tx.query_one("INSERT INTO outbox (payment_id, kind, stream, state, envelope, "
                       "created_at, updated_at) VALUES (?, 'webhook', ?, 'pending', ?, ?, ?) "
                       "RETURNING id", (payment_id, keys.WEBHOOK, body.encode(), at, at))
    return (keys.WEBHOOK, row[0])
