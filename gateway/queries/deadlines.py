"""Deadlines of query and reply on the business calendar, and the timer that watches them.

DOMAIN.md §2: a bank that doubts a payment queries it the same day, at the latest on the
morning of the next working day; the bank queried replies the day the query arrives, at
the latest on the morning of the next working day. Both "latest" points are the same
calendar rule, `BusinessCalendar.deadline_morning`, with the morning ending at the
configured cut-off. A query that arrives on a weekend or holiday (BEPS runs every day)
is therefore due on the morning of the first working day after it.

The timer raises each item to operators at most twice: once when its reply falls due
within `warn_before_min` (only replies we owe: theirs we can only chase), once when it
is past due. The marks are set with a conditional update, so two gateway processes
sharing the database raise each alert once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Callable

from gateway.calendar import BusinessCalendar
from gateway.queries.policy import QueryPolicy

log = logging.getLogger("paygate.queries")

# Open items looked at per pass, soonest due first; more wait for the next pass.
SCAN_ROWS_MAX = 1000

ALERT_DUE_SOON = "query_reply_due_soon"
ALERT_OVERDUE = "query_reply_overdue"
ALERT_COUNTERPARTY_OVERDUE = "query_counterparty_reply_overdue"


def reply_due(calendar: BusinessCalendar, arrived_at: datetime,
              policy: QueryPolicy) -> datetime:
    """When the reply to a query that arrived (or was sent) at `arrived_at` is due."""
    return calendar.deadline_morning(arrived_at, policy.cutoff)


def ask_due(calendar: BusinessCalendar, doubt_at: datetime, policy: QueryPolicy) -> datetime:
    """By when a query about a payment doubted at `doubt_at` must be sent."""
    return calendar.deadline_morning(doubt_at, policy.cutoff)


def scan(tx: Any, now: datetime, policy: QueryPolicy,
         alert: Callable[..., None]) -> dict[str, int]:
    """Raise what nears or passes its due time; returns how many of each were raised."""
    rows = tx.query("SELECT id, direction, counterparty, payment_id, reply_due_at, "
                    "warned_at, overdue_at FROM queries WHERE state = 'open' AND "
                    "overdue_at IS NULL ORDER BY reply_due_at LIMIT ?", (SCAN_ROWS_MAX,))
    raised = {"due_soon": 0, "overdue": 0}
    warn_before = timedelta(minutes=policy.warn_before_min)
    for qid, direction, counterparty, payment_id, due_text, warned_at, _ in rows:
        due = datetime.fromisoformat(due_text)
        detail = {"query": qid, "counterparty": counterparty, "payment": payment_id,
                  "due": due_text}
        if now > due:
            if _mark(tx, qid, "overdue_at", now):
                code = ALERT_OVERDUE if direction == "in" else ALERT_COUNTERPARTY_OVERDUE
                alert(tx, code, **detail)
                raised["overdue"] += 1
        elif direction == "in" and warned_at is None and now >= due - warn_before:
            if _mark(tx, qid, "warned_at", now):
                alert(tx, ALERT_DUE_SOON, **detail)
                raised["due_soon"] += 1
    return raised


def _mark(tx: Any, query_id: str, column: str, now: datetime) -> bool:
    assert column in ("warned_at", "overdue_at"), column
    changed = tx.execute(f"UPDATE queries SET {column} = ?, updated_at = ? "
                         f"WHERE id = ? AND {column} IS NULL AND state = 'open'",
                         (now.isoformat(), now.isoformat(), query_id))
    if changed:
        log.info("event=query_%s query=%s", column.removesuffix("_at"), query_id)
    return changed == 1
