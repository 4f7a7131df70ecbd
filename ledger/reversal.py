"""Corrections (冲正): a posting is never edited or deleted, it is reversed.

A reversal is a new entry with every line of the original on the other side, made on
the original's work date while that date is still open (same day only). It undoes the
state the original created: a reversed hold is void; a reversed release, settlement or
netting puts its hold back on hold (a netting of many holds together, every one of
them); a reversed suspense credit voids its item; a reversed clearing or return
reopens the item; so do a reversed receivable (void) and its reversed collection.

When later postings depend on an entry (a settlement on its hold, a clearing on its
suspense credit), they must be reversed first: corrections run from the newest back to
the oldest, and the ledger refuses any other order (`later_postings_depend_on_entry`).
A reversal itself is never reversed; the original is posted again under a new event.
"""

from __future__ import annotations

from datetime import date

from ledger.db import Transaction
from ledger.errors import LedgerError
from ledger.holds import reopen_hold, reopen_holds_of
from ledger.balances import Line
from ledger.postings import (
    CREDIT, DEBIT, VOUCHER_CORRECTION, Posting, fingerprint, post, replay,
    work_date_text,
)
from ledger.settings import Context

_ENDS_HOLD = ("release", "settle", "net")
_ENDS_ITEM = ("clear_suspense", "return_suspense")


def reverse(ctx: Context, tx: Transaction, event_id: str, entry_id: int, work_date: date | str,
            by: str) -> int:
    """Reverse entry `entry_id` on its own work date; the reversal's entry id."""
    day = work_date_text(work_date)
    if not isinstance(by, str) or not by.strip():
        raise LedgerError("reversal_needs_an_operator", by, "the operator's id", "by")
    content = fingerprint("reverse", entry_id, day, by)
    found = replay(tx, event_id, content)
    if found is not None:
        return found[0]

    op, entry_day, ref, depends_on = _reversible(tx, entry_id, day)
    lines = tx.query("SELECT account_no, side, amount_fen FROM ledger_line"
                     " WHERE entry_id = ? ORDER BY line_no", (entry_id,))
    swapped = [Line(account, CREDIT if side == DEBIT else DEBIT, int(amount_fen))
               for account, side, amount_fen in lines]
    swapped.sort(key=lambda line: line.side != DEBIT)  # debits post before credits
    posting = Posting(event_id, "reverse", content, VOUCHER_CORRECTION, entry_day,
                      tuple(swapped), ref=ref, reverses=entry_id, teller=by)
    reversal_id = post(tx, posting, ctx.accounts.rules).entry_id
    _undo_state(tx, op, entry_id, depends_on)
    return reversal_id


def _reversible(tx: Transaction, entry_id: int, day: str) -> tuple[str, str, str, int | None]:
    """(op, work date, ref, depends_on) of an entry that may be reversed today."""
    row = tx.query_one("SELECT op, work_date, ref, depends_on, reverses FROM ledger_entry"
                       " WHERE entry_id = ?", (entry_id,))
    if row is None:
        raise LedgerError("entry_not_found", entry_id, "an entry id of ours", "entry_id")
    op, entry_day, ref, depends_on, reverses = row
    if reverses is not None:
        raise LedgerError("entry_is_a_reversal", entry_id, "an original posting", "entry_id")
    if entry_day != day:
        raise LedgerError("reversal_only_on_the_same_day", entry_day,
                          f"an entry of {day}", "entry_id")
    if tx.query_one("SELECT entry_id FROM ledger_entry WHERE reverses = ?", (entry_id,)):
        raise LedgerError("entry_already_reversed", entry_id, "an entry not yet reversed",
                          "entry_id")
    dependants = tx.query(
        "SELECT e.entry_id FROM ledger_entry e WHERE e.depends_on = ? AND NOT EXISTS"
        " (SELECT 1 FROM ledger_entry r WHERE r.reverses = e.entry_id) ORDER BY e.entry_id",
        (entry_id,),
    )
    if dependants:
        raise LedgerError("later_postings_depend_on_entry", [r[0] for r in dependants],
                          "the later postings reversed first, newest first", "entry_id")
    return op, entry_day, ref, depends_on


def _undo_state(tx: Transaction, op: str, entry_id: int, depends_on: int | None) -> None:
    # A reversed hold is void by the reversal entry itself; nothing else to record.
    if op == "net_together":  # it ended many holds, naming none
        reopen_holds_of(tx, entry_id)
    elif op in _ENDS_HOLD:
        assert depends_on is not None, "an entry that ends a hold names it"
        reopen_hold(tx, depends_on)
    elif op in ("credit", "credit_netted"):
        tx.execute("UPDATE ledger_suspense SET state = 'void' WHERE entry_id = ?", (entry_id,))
    elif op in _ENDS_ITEM:
        tx.execute("UPDATE ledger_suspense SET state = 'open' WHERE entry_id = ?",
                   (depends_on,))
    elif op == "receivable":
        tx.execute("UPDATE ledger_receivable SET state = 'void' WHERE entry_id = ?",
                   (entry_id,))
    elif op == "collect_receivable":
        tx.execute("UPDATE ledger_receivable SET state = 'open' WHERE entry_id = ?",
                   (depends_on,))
