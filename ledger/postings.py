"""The posting engine: one balanced journal entry per business event.

Every operation of the ledger ends here. `post` checks that the work date is still
open, applies each line to its account's running balance with one conditional UPDATE
(the condition carries the account rules, so the common case costs no SELECT), and
inserts the entry and its lines. The entry's `event_id` is unique: `replay` finds an
event already posted, so that posting it again has no second effect.

Account rules, checked by the UPDATE's WHERE clause:

- a closed account takes no postings;
- a line that lowers a balance (a debit on a deposit account) needs the balance to
  cover it, unless the account's subject allows a balance below zero;
- a frozen account refuses lines that lower its balance, until the freeze lapses
  (the day after `frozen_until`).

When a line is refused, the lines already applied are undone before the error is
raised, so a refusal leaves the caller's transaction exactly as it found it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from ledger.db import Transaction
from ledger.errors import LedgerError

DEBIT = "D"
CREDIT = "C"

# Voucher kinds (the first two digits of a voucher number): which paper a teller would
# have filled in for the posting.
VOUCHER_CASH = "10"  # cash deposit slip (现金存款凭条)
VOUCHER_SPECIAL_TRANSFER = "20"  # special transfer voucher (特种转账传票)
VOUCHER_REMITTANCE = "30"  # remittance voucher (汇兑凭证), outgoing payments
VOUCHER_INCOMING = "40"  # incoming electronic remittance voucher (电子汇划收款补充凭证)
VOUCHER_FEE = "50"  # fee voucher (收费凭证)
VOUCHER_CORRECTION = "90"  # correction voucher (冲正传票)
VOUCHER_KINDS = {
    VOUCHER_CASH: "cash deposit slip", VOUCHER_SPECIAL_TRANSFER: "special transfer voucher",
    VOUCHER_REMITTANCE: "remittance voucher", VOUCHER_INCOMING: "incoming remittance voucher",
    VOUCHER_FEE: "fee voucher", VOUCHER_CORRECTION: "correction voucher",
}

_APPLY = (
    "UPDATE ledger_account"
    " SET balance_fen = CASE WHEN normal_side = ? THEN balance_fen + ? ELSE balance_fen - ? END"
    " WHERE account_no = ? AND status <> 'closed'"
    " AND (normal_side = ? OR ((negative_ok = 1 OR balance_fen >= ?)"
    " AND (status = 'open' OR frozen_until < ?)))"
)
_UNDO = (
    "UPDATE ledger_account"
    " SET balance_fen = CASE WHEN normal_side = ? THEN balance_fen - ? ELSE balance_fen + ? END"
    " WHERE account_no = ?"
)
_INSERT_ENTRY = (
    "INSERT INTO ledger_entry (event_id, op, fingerprint, voucher_kind, work_date, ref,"
    " depends_on, reverses, teller, result) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " RETURNING entry_id"
)
_INSERT_LINE = (
    "INSERT INTO ledger_line (entry_id, account_no, side, amount_fen) VALUES (?, ?, ?, ?)"
)


@dataclass(frozen=True)
class Line:
    account_no: str
    side: str
    amount_fen: int


@dataclass(frozen=True)
class Posting:
    """What one business event posts; `fingerprint` identifies its content."""

    event_id: str
    op: str
    fingerprint: str
    voucher_kind: str
    work_date: str
    lines: tuple[Line, ...]
    ref: str = ""
    depends_on: int | None = None
    reverses: int | None = None
    teller: str = "gateway"


def transfer(debit_account: str, credit_account: str, amount_fen: int) -> tuple[Line, Line]:
    """The two lines moving `amount_fen` from one account to another, debit first."""
    return Line(debit_account, DEBIT, amount_fen), Line(credit_account, CREDIT, amount_fen)


def work_date_text(work_date: date | str) -> str:
    """The ISO form of a work date given as a `date` or an ISO string."""
    if isinstance(work_date, date):
        return work_date.isoformat()
    if isinstance(work_date, str):
        try:
            return date.fromisoformat(work_date).isoformat()
        except ValueError:
            pass
    raise LedgerError("work_date_invalid", str(work_date), "a date, YYYY-MM-DD", "work_date")


def check_amount(amount_fen: object, path: str = "amount_fen") -> int:
    """An amount in fen must be a positive integer (never a float, never a bool)."""
    if type(amount_fen) is not int or amount_fen <= 0:
        raise LedgerError("amount_must_be_positive_fen", amount_fen,
                          "a positive integer number of fen", path)
    return amount_fen


def fingerprint(op: str, *parts: object) -> str:
    """The content of an event, to tell a replay from a reused event id."""
    return "|".join([op, *(str(part) for part in parts)])


def check_event_id(event_id: object) -> str:
    if not isinstance(event_id, str) or not event_id or len(event_id) > 200:
        raise LedgerError("event_id_invalid", event_id, "a non-empty string of at most 200",
                          "event_id")
    return event_id


def replay(tx: Transaction, event_id: str, fingerprint: str) -> tuple[int, str] | None:
    """(entry id, stored result) of an event already posted with the same content."""
    row = tx.query_one(
        "SELECT entry_id, fingerprint, result FROM ledger_entry WHERE event_id = ?",
        (check_event_id(event_id),),
    )
    if row is None:
        return None
    if row[1] != fingerprint:
        raise LedgerError("event_id_reused_for_other_posting", event_id,
                          f"the posting first made under it: {row[1]}", "event_id")
    return int(row[0]), str(row[2])


def check_work_date_open(tx: Transaction, work_date: str) -> None:
    """A work date at or before the last closed one takes no postings."""
    last_closed = tx.cache.get("last_closed")
    if last_closed is None:
        row = tx.query_one("SELECT MAX(work_date) FROM ledger_day")
        last_closed = (row[0] if row else None) or ""
        tx.cache["last_closed"] = last_closed
    if work_date <= last_closed:
        raise LedgerError("work_date_closed", work_date, f"a date after {last_closed}",
                          "work_date")


def post(tx: Transaction, posting: Posting, result: str = "",
         insufficient_code: str = "account_balance_insufficient") -> int:
    """Apply and record one balanced entry; its entry id. Raises LedgerError, changing nothing."""
    _assert_balanced(posting.lines)
    check_work_date_open(tx, posting.work_date)
    _apply_lines(tx, posting.lines, posting.work_date, insufficient_code)

    row = tx.query_one(_INSERT_ENTRY, (
        posting.event_id, posting.op, posting.fingerprint, posting.voucher_kind,
        posting.work_date, posting.ref, posting.depends_on, posting.reverses,
        posting.teller, result,
    ))
    assert row is not None, "INSERT ... RETURNING gives the new entry id"
    entry_id = int(row[0])
    tx.executemany(_INSERT_LINE, [
        (entry_id, line.account_no, line.side, line.amount_fen) for line in posting.lines
    ])
    return entry_id


def _assert_balanced(lines: tuple[Line, ...]) -> None:
    debit_fen = sum(line.amount_fen for line in lines if line.side == DEBIT)
    credit_fen = sum(line.amount_fen for line in lines if line.side == CREDIT)
    assert lines and debit_fen == credit_fen, "a journal entry balances"
    assert all(line.amount_fen > 0 for line in lines), "every line moves money"


def _apply_lines(tx: Transaction, lines: tuple[Line, ...], work_date: str,
                 insufficient_code: str) -> None:
    for done, line in enumerate(lines):
        changed = tx.execute(_APPLY, (
            line.side, line.amount_fen, line.amount_fen, line.account_no, line.side,
            line.amount_fen, work_date,
        ))
        if changed != 1:
            error = _refusal(tx, line, work_date, insufficient_code)
            for applied in reversed(lines[:done]):
                tx.execute(_UNDO, (applied.side, applied.amount_fen, applied.amount_fen,
                                   applied.account_no))
            raise error


def _refusal(tx: Transaction, line: Line, work_date: str,
             insufficient_code: str) -> LedgerError:
    """Why the conditional UPDATE refused `line`."""
    row = tx.query_one(
        "SELECT status, frozen_until, balance_fen FROM ledger_account WHERE account_no = ?",
        (line.account_no,),
    )
    if row is None:
        return LedgerError("account_not_found", line.account_no, "an account of ours",
                           "account_no")
    status, frozen_until, balance_fen = row
    if status == "closed":
        return LedgerError("account_closed", line.account_no, "an open account", "account_no")
    if status == "frozen" and frozen_until >= work_date:
        return LedgerError("account_frozen", line.account_no,
                           f"no debits until the freeze lapses after {frozen_until}",
                           "account_no")
    return LedgerError(insufficient_code, line.amount_fen,
                       f"at most the balance of {balance_fen} fen", "amount_fen")
