"""The state of a hold, read from the books rather than stored beside them.

A hold is its posting: the hold id is the entry id of the hold entry (Dr payer, Cr
holds in transit), whose first line names the payer and the amount. While nothing else
happened to it, it is "held". It ends once, recorded in `ledger_hold_end` (primary key
on the hold id, so no hold ends twice even under concurrent writers): "released",
"settled" or "netted". A reversed hold is "void"; reversing the entry that ended a
hold removes the end record, and the hold is held again.

Keeping no row per live hold spares the hot path of every payment one write.
"""

from __future__ import annotations

from typing import NamedTuple

from ledger.db import Transaction
from ledger.errors import LedgerError
from ledger.postings import IDS_PER_QUERY

HELD = "held"
VOID = "void"

_HOLDS = (
    "SELECT e.op, l.account_no, l.amount_fen, e.ref,"
    " (SELECT h.state FROM ledger_hold_end h WHERE h.hold_id = e.entry_id),"
    " (SELECT r.entry_id FROM ledger_entry r WHERE r.reverses = e.entry_id), e.entry_id"
    " FROM ledger_entry e JOIN ledger_line l ON l.entry_id = e.entry_id AND l.line_no = 1"
)
_HOLD = _HOLDS + " WHERE e.entry_id = ?"
_OPEN_HOLDS = (
    "SELECT COUNT(*), SUM(l.amount_fen)"
    " FROM ledger_line l JOIN ledger_entry e ON e.entry_id = l.entry_id"
    " WHERE l.account_no = ? AND l.line_no = 1 AND e.op = 'hold'"
    " AND NOT EXISTS (SELECT 1 FROM ledger_hold_end h WHERE h.hold_id = e.entry_id)"
    " AND NOT EXISTS (SELECT 1 FROM ledger_entry r WHERE r.reverses = e.entry_id)"
)


class Hold(NamedTuple):
    hold_id: int
    account_no: str
    amount_fen: int
    ref: str
    state: str


def find_hold(tx: Transaction, hold_id: int) -> Hold:
    """The hold `hold_id` and its state; refused if no hold has that id."""
    row = tx.query_one(_HOLD, (hold_id,)) if type(hold_id) is int else None
    return _hold(hold_id, row)


def find_holds(tx: Transaction, hold_ids: list[int]) -> list[Hold]:
    """`find_hold` for many holds, read a few hundred a query; in the order given, the
    first id that is no hold refused."""
    rows: dict[int, tuple] = {}
    wanted = [hold_id for hold_id in dict.fromkeys(hold_ids) if type(hold_id) is int]
    for start in range(0, len(wanted), IDS_PER_QUERY):
        chunk = wanted[start:start + IDS_PER_QUERY]
        rows.update((int(row[-1]), row) for row in tx.query(
            f"{_HOLDS} WHERE e.entry_id IN ({', '.join('?' * len(chunk))})", chunk))
    return [_hold(hold_id, rows.get(hold_id)) for hold_id in hold_ids]


def _hold(hold_id: int, row: tuple | None) -> Hold:
    if row is None or row[0] != "hold":
        raise LedgerError("hold_not_found", hold_id, "the id hold() returned", "hold_id")
    _, account_no, amount_fen, ref, ended, reversal, _ = row
    state = VOID if reversal is not None else (ended or HELD)
    return Hold(hold_id, account_no, int(amount_fen), ref, state)


def end_hold(tx: Transaction, hold_id: int, entry_id: int, state: str) -> None:
    tx.execute("INSERT INTO ledger_hold_end (hold_id, entry_id, state) VALUES (?, ?, ?)",
               (hold_id, entry_id, state))


_INSERT_ENDS = "INSERT INTO ledger_hold_end (hold_id, entry_id, state) VALUES"


def end_holds(tx: Transaction, ends: list[tuple[int, int]], state: str) -> None:
    """`end_hold` for many: (hold id, entry id ending it) each, with multi-row INSERTs."""
    tx.insert_rows(_INSERT_ENDS, [(hold_id, entry_id, state) for hold_id, entry_id in ends])


def end_holds_with(tx: Transaction, hold_ids: list[int], entry_id: int, state: str) -> None:
    """Many holds ended by one entry (ledger.payments.net_together)."""
    tx.insert_rows(_INSERT_ENDS, [(hold_id, entry_id, state) for hold_id in hold_ids])


_HELD_TOTAL = (
    "SELECT COUNT(*), SUM(l.amount_fen) FROM ledger_entry e"
    " JOIN ledger_line l ON l.entry_id = e.entry_id AND l.line_no = 1"
    " WHERE e.op = 'hold'"
    " AND NOT EXISTS (SELECT 1 FROM ledger_hold_end h WHERE h.hold_id = e.entry_id)"
    " AND NOT EXISTS (SELECT 1 FROM ledger_entry r WHERE r.reverses = e.entry_id)"
    " AND e.entry_id IN "
)


def held_total(tx: Transaction, hold_ids: list[int]) -> int:
    """The sum in fen of holds that are all still held (ids named once each), counted by
    the database a few hundred a query without reading them back; when one is not
    (no hold, ended, void), the first such in the order given is refused as `find_holds`
    refuses it."""
    count = total_fen = 0
    if all(type(hold_id) is int for hold_id in hold_ids):
        for start in range(0, len(hold_ids), IDS_PER_QUERY):
            chunk = hold_ids[start:start + IDS_PER_QUERY]
            row = tx.query_one(f"{_HELD_TOTAL}({', '.join('?' * len(chunk))})", chunk)
            count += int(row[0]) if row else 0
            total_fen += int(row[1] or 0) if row else 0
    if count != len(hold_ids):
        for h in find_holds(tx, hold_ids):
            if h.state != HELD:
                raise LedgerError("hold_already_ended", h.state, "a hold still held",
                                  "hold_id")
        raise AssertionError("a hold counted as not held reads as held")
    return total_fen


def reopen_holds_of(tx: Transaction, entry_id: int) -> None:
    """The entry that ended many holds was reversed: each is held again."""
    tx.execute("DELETE FROM ledger_hold_end WHERE entry_id = ?", (entry_id,))


def reopen_hold(tx: Transaction, hold_id: int) -> None:
    """The entry that ended the hold was reversed: the hold is held again."""
    tx.execute("DELETE FROM ledger_hold_end WHERE hold_id = ?", (hold_id,))


def open_hold_count(tx: Transaction, account_no: str) -> int:
    return open_holds(tx, account_no)[0]


def open_holds(tx: Transaction, account_no: str) -> tuple[int, int]:
    """How many holds on the account are still held (neither ended nor reversed), and the
    fen they hold; read from the account's lines, one query."""
    row = tx.query_one(_OPEN_HOLDS, (account_no,))
    return (int(row[0]), int(row[1] or 0)) if row else (0, 0)
