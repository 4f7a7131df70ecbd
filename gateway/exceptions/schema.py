"""The exception flows' own tables, and reading and writing their rows.

- `exc_requests`: every cancellation request (ccms.307) and status query (ccms.316) we
  sent, the payment it is about, and the NPC's answer once it came.
- `exc_returns`: every return (退汇) linking the A105 payment to the payment it returns:
  `out` when we return an incoming payment, `in` when a peer bank returned ours; who
  asked for it (`requested_by`) and, for operators' returns under dual control, the
  second person who approved it (`approved_by`, null for a return nobody approved).
- `exc_suspense_keep`: suspense items an operator (or a failed automatic return) took
  out of the automatic return.
- `exc_suspense_applied`: suspense items an operator applied to a customer account (销账):
  which account, the ledger entry, who approved it and why.

The SQL is portable between SQLite and PostgreSQL, like the core schema's.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from gateway import dialect, operator_names, scope
from gateway.store import NOT_READ, answered, reading_once, rows_by_id

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS exc_requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,               -- cancel | status
        payment_id TEXT NOT NULL,
        msg_id TEXT NOT NULL,             -- XML MsgId of our ccms.307 or ccms.316
        mesg_id TEXT NOT NULL,            -- its header MesgID
        state TEXT NOT NULL,              -- sent | granted | refused | answered | failed
        requested_by TEXT NOT NULL,
        reason TEXT,
        answer TEXT,                      -- JSON: status, code, info of the answer
        created_at TEXT NOT NULL, answered_at TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS exc_requests_payment ON exc_requests (payment_id)",
    "CREATE UNIQUE INDEX IF NOT EXISTS exc_requests_msg ON exc_requests (msg_id)",
    """CREATE TABLE IF NOT EXISTS exc_returns (
        return_id TEXT PRIMARY KEY,       -- the A105 payment
        original_id TEXT NOT NULL,        -- the payment it returns
        direction TEXT NOT NULL,          -- out: we return | in: a peer returned ours
        via TEXT NOT NULL,                -- out: suspense | account; in: how it was credited
        state TEXT NOT NULL,              -- pending | settled | failed
        reason TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        approved_by TEXT                  -- dual control's second person; null: none
    )""",
    "CREATE INDEX IF NOT EXISTS exc_returns_original ON exc_returns (original_id)",
    """CREATE TABLE IF NOT EXISTS exc_suspense_keep (
        payment_id TEXT PRIMARY KEY, kept_by TEXT NOT NULL, note TEXT NOT NULL,
        at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS exc_suspense_applied (
        payment_id TEXT PRIMARY KEY,      -- the incoming payment whose item it was
        pending_no TEXT NOT NULL,         -- the item's pending write-off number
        account_no TEXT NOT NULL,         -- the customer account credited
        entry_id INTEGER NOT NULL,        -- the ledger entry: Dr suspense, Cr the account
        applied_by TEXT NOT NULL, note TEXT NOT NULL, at TEXT NOT NULL
    )""",
]

# An incoming payment applied from suspense is on the account it was applied to: a client's
# scope (gateway.scope) judges it by that account, which a return takes the money from.
scope.CREDITED_SQL = ("(SELECT a.account_no FROM exc_suspense_applied a "
                      "WHERE a.payment_id = payments.id)")
# Until then its money is in our suspense account, and it is judged by that account (no
# customer's); so too once returned from there (`via` suspense, settled): the money went
# back to the sender from suspense, never reaching the account the message named.
scope.IN_SUSPENSE_SQL = (
    "(payments.direction = 'in' AND (payments.state = 'suspense' OR "
    "(payments.state = 'returned' AND EXISTS (SELECT 1 FROM exc_returns r "
    "WHERE r.original_id = payments.id AND r.direction = 'out' AND r.via = 'suspense' "
    "AND r.state = 'settled'))))")

REQUEST_COLUMNS = ("id", "kind", "payment_id", "msg_id", "mesg_id", "state", "requested_by",
                   "reason", "answer", "created_at", "answered_at")
RETURN_COLUMNS = ("return_id", "original_id", "direction", "via", "state", "reason",
                  "requested_by", "approved_by", "created_at", "updated_at")
# Columns a database made before them gets at start-up (dialect.add_columns).
ADDED_COLUMNS = {"exc_returns": [("approved_by", "TEXT")]}
OPEN_RETURN_STATES = ("pending", "settled")


def create_tables(tx: Any) -> None:
    dialect.install(tx, SCHEMA)
    for table, columns in ADDED_COLUMNS.items():
        dialect.add_columns(tx, table, columns)


# Requests (ccms.307, ccms.316)

def add_request(tx: Any, kind: str, payment_id: str, msg_id: str, mesg_id: str, by: str,
                reason: str | None, now: datetime) -> int:
    row = tx.query_one("INSERT INTO exc_requests (kind, payment_id, msg_id, mesg_id, state, "
                       "requested_by, reason, created_at) VALUES (?, ?, ?, ?, 'sent', ?, ?, ?)"
                       " RETURNING id", (kind, payment_id, msg_id, mesg_id, by, reason,
                                         now.isoformat()))
    return row[0]


def _request(values: tuple | None) -> dict[str, Any] | None:
    if values is None:
        return None
    row = operator_names.plain(dict(zip(REQUEST_COLUMNS, values)))
    row["answer"] = json.loads(row["answer"]) if row["answer"] else None
    return row


_SELECT_REQUEST = "SELECT " + ", ".join(REQUEST_COLUMNS) + " FROM exc_requests"


def request_by_msg_id(tx: Any, msg_id: str) -> dict[str, Any] | None:
    return _request(tx.query_one(f"{_SELECT_REQUEST} WHERE msg_id = ?", (msg_id,)))


def requests_of(tx: Any, payment_id: str) -> list[dict[str, Any]]:
    rows = tx.query(f"{_SELECT_REQUEST} WHERE payment_id = ? ORDER BY id", (payment_id,))
    return [_request(r) for r in rows]


def open_request(tx: Any, kind: str, payment_id: str) -> dict[str, Any] | None:
    return _request(tx.query_one(f"{_SELECT_REQUEST} WHERE kind = ? AND payment_id = ? "
                                 "AND state = 'sent' ORDER BY id DESC", (kind, payment_id)))


def answer_request(tx: Any, request_id: int, state: str, answer: dict[str, Any],
                   now: datetime) -> None:
    tx.execute("UPDATE exc_requests SET state = ?, answer = ?, answered_at = ? WHERE id = ?",
               (state, json.dumps(answer, ensure_ascii=False), now.isoformat(), request_id))


def give_up_request(tx: Any, request_id: int, now: datetime) -> bool:
    """Record that no answer came to a request still waiting for one; False when its
    answer was recorded meanwhile (by another gateway process: it is left as it is)."""
    return tx.execute("UPDATE exc_requests SET state = 'unanswered', answer = '{}', "
                      "answered_at = ? WHERE id = ? AND state = 'sent'",
                      (now.isoformat(), request_id)) == 1


# Returns

_SELECT_RETURN = "SELECT " + ", ".join(RETURN_COLUMNS) + " FROM exc_returns"


def add_return(tx: Any, return_id: str, original_id: str, direction: str, via: str,
               state: str, reason: str, by: str, now: datetime,
               approved_by: str | None = None) -> None:
    """Record a return: `by` asked for it, `approved_by` (operators' returns, under dual
    control) approved it; None when nobody had to (the core system's, the automatic
    return's, a peer bank's)."""
    tx.execute("INSERT INTO exc_returns (return_id, original_id, direction, via, state, "
               "reason, requested_by, approved_by, created_at, updated_at) VALUES (?, ?, "
               "?, ?, ?, ?, ?, ?, ?, ?)", (return_id, original_id, direction, via, state,
                                           reason, by, approved_by, now.isoformat(),
                                           now.isoformat()))


def _return(tx: Any, values: tuple | None) -> dict[str, Any] | None:
    """A return's row, its operators named plainly (gateway.operator_names); one recorded
    before `approved_by` was kept names its approver as the history of the payment it
    returns does (its `return_requested`)."""
    if values is None:
        return None
    row = operator_names.plain(dict(zip(RETURN_COLUMNS, values)))
    if row["approved_by"] is None and row["direction"] == "out":
        row["approved_by"] = _approver_in_history(tx, row["original_id"], row["return_id"])
    return row


def _approver_in_history(tx: Any, original_id: str, return_id: str) -> str | None:
    """Who approved the return `return_id` as the original's `return_requested` records
    it (None: a return nobody approved)."""
    for (detail,) in tx.query("SELECT detail FROM payment_events WHERE payment_id = ? AND "
                              "event = 'return_requested' ORDER BY id DESC", (original_id,)):
        recorded = json.loads(detail)
        if recorded.get("return_id") == return_id:
            return operator_names.operator_name(recorded.get("approved_by"))
    return None


def return_by_id(tx: Any, return_id: str) -> dict[str, Any] | None:
    return _return(tx, tx.query_one(f"{_SELECT_RETURN} WHERE return_id = ?", (return_id,)))


def open_return_of(tx: Any, original_id: str) -> dict[str, Any] | None:
    """The return of a payment that is under way or done. A failed one does not count,
    nor one whose A105 payment was cancelled or rejected by any road (an operator's
    cancellation of an unsent payment, say). Inside `open_returns_read_once`, answered
    from that read."""
    values = answered(tx, _OPEN_READ_ONCE, original_id)
    if values is NOT_READ:
        values = tx.query_one(
            f"SELECT {_OPEN_COLUMNS} FROM exc_returns r JOIN payments p ON "
            f"p.id = r.return_id WHERE r.original_id = ? AND {_OPEN} "
            "ORDER BY r.created_at DESC", (original_id,))
    # Its state and ids are what its callers check: `approved_by` as the row keeps it.
    return operator_names.plain(dict(zip(RETURN_COLUMNS, values))) if values else None


def open_returns_read_once(tx: Any, original_ids: list[str]
                           ) -> AbstractContextManager[dict[Any, Any]]:
    """`open_return_of` each of these payments read in one statement (a few for a long
    list), and within the block answered from that read (store.reading_once): for checks
    that only read (the console's row actions)."""
    return reading_once(tx, _OPEN_READ_ONCE, rows_by_id(
        tx, original_ids, f"SELECT r.original_id, {_OPEN_COLUMNS} FROM exc_returns r "
        f"JOIN payments p ON p.id = r.return_id WHERE r.original_id IN ({{ids}}) "
        f"AND {_OPEN} ORDER BY r.created_at"))  # the newest last


_OPEN_COLUMNS = ", ".join(f"r.{c}" for c in RETURN_COLUMNS)
_OPEN = (f"r.state IN ({', '.join(repr(s) for s in OPEN_RETURN_STATES)}) "
         "AND p.state NOT IN ('rejected', 'cancelled')")
_OPEN_READ_ONCE = "exc_open_returns"


def returns_of(tx: Any, payment_id: str) -> list[dict[str, Any]]:
    rows = tx.query(f"{_SELECT_RETURN} WHERE original_id = ? OR return_id = ? "
                    "ORDER BY created_at", (payment_id, payment_id))
    return [_return(tx, r) for r in rows]


def set_return_state(tx: Any, return_id: str, state: str, now: datetime) -> None:
    tx.execute("UPDATE exc_returns SET state = ?, updated_at = ? WHERE return_id = ?",
               (state, now.isoformat(), return_id))


# Suspense items kept from the automatic return

def keep(tx: Any, payment_id: str, by: str, note: str, now: datetime) -> bool:
    """Keep an item from the automatic return; False when it was kept already."""
    if tx.query_one("SELECT 1 FROM exc_suspense_keep WHERE payment_id = ?", (payment_id,)):
        return False
    tx.execute("INSERT INTO exc_suspense_keep (payment_id, kept_by, note, at) "
               "VALUES (?, ?, ?, ?)", (payment_id, by, note, now.isoformat()))
    return True


def unkeep(tx: Any, payment_id: str) -> bool:
    return tx.execute("DELETE FROM exc_suspense_keep WHERE payment_id = ?", (payment_id,)) > 0


def kept(tx: Any, payment_id: str) -> dict[str, Any] | None:
    row = tx.query_one("SELECT kept_by, note, at FROM exc_suspense_keep WHERE payment_id = ?",
                       (payment_id,))
    return {"kept_by": operator_names.operator_name(row[0]), "note": row[1],
            "at": row[2]} if row else None


# Suspense items applied to an account (销账)

APPLIED_COLUMNS = ("payment_id", "pending_no", "account_no", "entry_id", "applied_by", "note",
                   "at")


def add_applied(tx: Any, payment_id: str, pending_no: str, account_no: str, entry_id: int,
                by: str, note: str, now: datetime) -> None:
    tx.execute("INSERT INTO exc_suspense_applied (payment_id, pending_no, account_no, "
               "entry_id, applied_by, note, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
               (payment_id, pending_no, account_no, entry_id, by, note, now.isoformat()))


def applied(tx: Any, payment_id: str) -> dict[str, Any] | None:
    """How the payment's suspense item was applied to an account; None when it was not."""
    row = tx.query_one(f"SELECT {', '.join(APPLIED_COLUMNS)} FROM exc_suspense_applied "
                       "WHERE payment_id = ?", (payment_id,))
    return operator_names.plain(dict(zip(APPLIED_COLUMNS, row))) if row else None
