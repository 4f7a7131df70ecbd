"""Receivables (其他应收款-待销账): money that left us before the customer who owes it
could be debited, kept open under a pending write-off number until it is collected.

The gateway books one when the NPC settles a payment that the gateway had already ended
(rejected or cancelled, the payer's hold released) and the payer's account can no
longer cover it (docs/exceptions.md, "A final result for a payment ended otherwise"):
the money has left our clearing account at the central bank, so the books follow it
there at once, and the claim on the payer stays open for operators to collect.

| event | entry |
|---|---|
| book_receivable | Dr other receivables (1221), Cr clearing account at the central bank |
| collect_receivable | Dr the customer's account, Cr other receivables |

The numbers are the suspense items' (ledger.incoming), of kind 2 with their own daily
sequence. The bank never advances money: a collection needs the account to cover the
whole amount now (`payer_funds_insufficient`). A reversed booking voids its item; a
reversed collection opens it again (ledger.reversal). `reverse_receivable` reverses
whichever of the two stands last, so that an item is corrected by its number alone.
"""

from __future__ import annotations

from datetime import date

from ledger import numbers, reversal
from ledger.db import Transaction
from ledger.errors import LedgerError
from ledger.postings import (
    VOUCHER_SPECIAL_TRANSFER, Posting, check_amount, fingerprint, post, replay, transfer,
    work_date_text,
)
from ledger.settings import Context
from ledger.types import ReceivableItem

_COLUMNS = "pending_no, amount_fen, account_no, reason, ref, work_date, state, entry_id"
_NEXT = (
    "INSERT INTO ledger_counter (name, value) VALUES (?, 1) ON CONFLICT (name)"
    " DO UPDATE SET value = ledger_counter.value + 1"
    " WHERE ledger_counter.value + 1 <= ? RETURNING value"
)
REASON_LEN_MAX = 200


def book_receivable(ctx: Context, tx: Transaction, event_id: str, account_no: str,
                    amount_fen: int, work_date: date | str, ref: str,
                    reason: str) -> ReceivableItem:
    """Follow money that left the clearing account for `account_no`'s debt: the item
    booked (or, for an event posted before, the item it booked)."""
    check_amount(amount_fen)
    day = work_date_text(work_date)
    reason = reason[:REASON_LEN_MAX]
    content = fingerprint("receivable", account_no, amount_fen, day, ref, reason)
    found = replay(tx, event_id, content)
    if found is not None:
        return _by_entry(tx, found[0])
    pending_no = _next_pending_no(tx, day)
    lines = transfer(ctx.accounts.receivables, ctx.accounts.clearing, amount_fen)
    posting = Posting(event_id, "receivable", content, VOUCHER_SPECIAL_TRANSFER, day, lines,
                      ref=ref)
    entry_id = post(tx, posting, ctx.accounts.rules).entry_id
    tx.execute("INSERT INTO ledger_receivable (pending_no, entry_id, amount_fen, account_no,"
               " reason, ref, work_date, state) VALUES (?, ?, ?, ?, ?, ?, ?, 'open')",
               (pending_no, entry_id, amount_fen, account_no, reason, ref, day))
    return _by_entry(tx, entry_id)


def collect_receivable(ctx: Context, tx: Transaction, event_id: str, pending_no: str,
                       account_no: str, work_date: date | str) -> int:
    """Debit the account for an open receivable and close it; the entry id."""
    if account_no in ctx.accounts.numbers:  # the bank's own accounts owe nothing
        raise LedgerError("account_not_found", account_no, "a customer account", "account_no")
    if tx.dialect == "postgresql":  # two collections at once: the second waits, then sees
        tx.query("SELECT 1 FROM ledger_receivable WHERE pending_no = ? FOR UPDATE",
                 (pending_no,))
    day = work_date_text(work_date)
    content = fingerprint("collect_receivable", pending_no, account_no, day)
    found = replay(tx, event_id, content)
    if found is not None:
        return found[0]
    item = find_receivable(tx, pending_no)
    if item.state != "open":
        raise LedgerError("receivable_not_open", item.state, "an open receivable",
                          "pending_no")
    lines = transfer(account_no, ctx.accounts.receivables, item.amount_fen)
    posting = Posting(event_id, "collect_receivable", content, VOUCHER_SPECIAL_TRANSFER, day,
                      lines, ref=item.pending_no, depends_on=item.entry_id)
    posted = post(tx, posting, ctx.accounts.rules, insufficient_code="payer_funds_insufficient")
    tx.execute("UPDATE ledger_receivable SET state = 'collected' WHERE entry_id = ?",
               (item.entry_id,))
    return posted.entry_id


def reverse_receivable(ctx: Context, tx: Transaction, event_id: str, pending_no: str,
                       work_date: date | str, by: str) -> tuple[int, ReceivableItem]:
    """Correct a receivable by reversing the posting that last changed it: its
    collection when it is collected (the item is open again), else its booking (the item
    is void). The reversal's entry id and the item after it. Reversals keep the
    ledger's rules: on the posting's own work date while it is open, by an operator."""
    item = find_receivable(tx, pending_no)
    if item.state == "void":
        raise LedgerError("receivable_already_void", item.pending_no,
                          "an open or collected receivable", "pending_no",
                          f"receivable {item.pending_no}'s booking was reversed already: "
                          "there is nothing left to correct")
    target = item.entry_id
    if item.state == "collected":
        collected = tx.query_one(_STANDING_COLLECTION, (item.entry_id,))
        assert collected is not None, f"receivable {item.pending_no} has its collection"
        target = int(collected[0])
    entry_id = reversal.reverse(ctx, tx, event_id, target, work_date, by)
    return entry_id, _by_entry(tx, item.entry_id)


# The collection of a receivable that stands (not reversed): the one a collected item has.
_STANDING_COLLECTION = (
    "SELECT e.entry_id FROM ledger_entry e WHERE e.depends_on = ? AND e.op = "
    "'collect_receivable' AND NOT EXISTS (SELECT 1 FROM ledger_entry r WHERE r.reverses = "
    "e.entry_id) ORDER BY e.entry_id DESC LIMIT 1")


def find_receivable(tx: Transaction, pending_no: str) -> ReceivableItem:
    """The newest receivable under `pending_no` (numbers repeat only a year apart)."""
    found = _one(tx, "pending_no = ? ORDER BY work_date DESC", pending_no)
    if found is None:
        raise LedgerError("receivable_not_found", pending_no,
                          "a pending write-off number of a receivable we booked",
                          "pending_no")
    return found


def open_receivables(tx: Transaction, as_of: date | str) -> list[ReceivableItem]:
    """Every open receivable with its age in days on `as_of`, oldest first."""
    return receivables_in(tx, "open", as_of)


STATES = ("open", "collected", "void")
LIST_MAX = 500  # receivables listed at once: a longer list is a case for the reports


def receivables_in(tx: Transaction, state: str, as_of: date | str,
                   limit: int = LIST_MAX) -> list[ReceivableItem]:
    """The receivables in `state` (open, collected or void) with their age in days on
    `as_of`, oldest first, at most `limit`."""
    assert state in STATES, f"a receivable is {', '.join(STATES)}, not {state}"
    return _items(tx, "state = ? ORDER BY work_date, pending_no LIMIT ?",
                  (state, min(limit, LIST_MAX)), date.fromisoformat(work_date_text(as_of)))


def _items(tx: Transaction, where: str, params: tuple, as_of: date | None = None
           ) -> list[ReceivableItem]:
    rows = tx.query(f"SELECT {_COLUMNS} FROM ledger_receivable WHERE {where}", params)
    return [_item(row, as_of) for row in rows]


def _one(tx: Transaction, where: str, value: object) -> ReceivableItem | None:
    found = _items(tx, where + " LIMIT 1", (value,))
    return found[0] if found else None


def _by_entry(tx: Transaction, entry_id: int) -> ReceivableItem:
    found = _one(tx, "entry_id = ?", entry_id)
    assert found is not None, f"entry {entry_id} booked a receivable"
    return found


def _next_pending_no(tx: Transaction, day: str) -> str:
    counter = f"pending:{numbers.PENDING_KIND_RECEIVABLE}:{day}"
    row = tx.query_one(_NEXT, (counter, numbers.PENDING_SEQUENCE_MAX))
    if row is None:
        raise LedgerError("pending_sequence_exhausted", day,
                          f"at most {numbers.PENDING_SEQUENCE_MAX} receivables a day",
                          "work_date")
    return numbers.make_pending_no(date.fromisoformat(day), int(row[0]),
                                   numbers.PENDING_KIND_RECEIVABLE)


def _item(row: tuple, as_of: date | None = None) -> ReceivableItem:
    age_days = 0 if as_of is None else (as_of - date.fromisoformat(row[5])).days
    return ReceivableItem(
        pending_no=row[0], amount_fen=int(row[1]), account_no=row[2], reason=row[3],
        ref=row[4], work_date=row[5], state=row[6], entry_id=int(row[7]), age_days=age_days)
