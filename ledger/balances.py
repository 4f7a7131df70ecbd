"""Running balances: applying an entry's lines to its accounts, and undoing them.

Balances are kept incrementally in `ledger_account.balance_fen`, signed on the
account's normal side. A customer line is applied at once with one conditional UPDATE
whose WHERE clause carries the account rules:

- a closed account takes no postings;
- a line that lowers a balance (a debit on a deposit account) needs the balance to
  cover it, unless the account's subject allows a balance below zero;
- a frozen account refuses lines that lower its balance until the freeze lapses (the
  day after `frozen_until`).

Lines on our own internal accounts that can never be refused (internal accounts are
never closed or frozen; the line raises the balance, or the subject allows any
balance) are deferred: their amounts are summed in the transaction and written with
one UPDATE per account when the transaction commits or when anything reads a balance
(a savepoint rolled back restores what was deferred before it: ledger.db). Every payment touches the same few internal accounts, so
this removes one write per posting and keeps those hot rows locked for less time.
A line that lowers an internal account's balance is checked at once, after writing
that account's deferred amount.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from ledger.db import DEFERRED_BALANCES, Transaction
from ledger.errors import LedgerError

DEFERRED = DEFERRED_BALANCES

_APPLY = (
    "UPDATE ledger_account"
    " SET balance_fen = CASE WHEN normal_side = ? THEN balance_fen + ? ELSE balance_fen - ? END"
    " WHERE account_no = ? AND status <> 'closed'"
    " AND (normal_side = ? OR ((negative_ok = 1 OR balance_fen >= ?)"
    " AND (status = 'open' OR frozen_until < ?)))"
)
# `_APPLY` giving back the account's holder name and role (`apply_lines`' `named`).
_APPLY_NAMED = _APPLY + " RETURNING name, role"
_UNDO = (
    "UPDATE ledger_account"
    " SET balance_fen = CASE WHEN normal_side = ? THEN balance_fen - ? ELSE balance_fen + ? END"
    " WHERE account_no = ?"
)
_ADD = "UPDATE ledger_account SET balance_fen = balance_fen + ? WHERE account_no = ?"


class AccountRule(NamedTuple):
    """What the engine knows about an internal account without reading it."""

    normal_side: str
    negative_ok: bool


class Line(NamedTuple):
    account_no: str
    side: str
    amount_fen: int


Rules = Mapping[str, AccountRule]


def apply_lines(tx: Transaction, lines: tuple[Line, ...], work_date: str,
                insufficient_code: str, rules: Rules,
                named: dict[str, tuple[str, str]] | None = None) -> None:
    """Apply every line, or none: a refused line raises after the others are undone.
    `named`, when given, gets the (name, role) of each account a line is applied to by
    a statement of its own (a customer's), as that statement changed it: the caller
    needs no read of its own for the holder's name."""
    for done, line in enumerate(lines):
        rule = rules.get(line.account_no)
        if rule is not None and (rule.negative_ok or rule.normal_side == line.side):
            _defer(tx, line.account_no, _signed(line, rule.normal_side))
            continue
        deferred = tx.cache.get(DEFERRED)
        if deferred and line.account_no in deferred:
            _write(tx, line.account_no, deferred.pop(line.account_no))
        params = (line.side, line.amount_fen, line.amount_fen, line.account_no, line.side,
                  line.amount_fen, work_date)
        if named is None:
            changed = tx.execute(_APPLY, params)
        else:
            row = tx.query_one(_APPLY_NAMED, params)
            changed = 0 if row is None else 1
            if row is not None:
                named[line.account_no] = (row[0], row[1])
        if changed != 1:
            error = _refusal(tx, line, work_date, insufficient_code)
            undo_lines(tx, lines[:done], rules)
            raise error


def defer_lines(tx: Transaction, lines: list[Line], rules: Rules) -> None:
    """Defer lines that the rules never refuse (see `apply_lines`), summed per account."""
    sums: dict[str, int] = {}
    for line in lines:
        rule = rules[line.account_no]
        assert rule.negative_ok or rule.normal_side == line.side, \
            f"a line on {line.account_no} that can be refused is not deferred"
        sums[line.account_no] = sums.get(line.account_no, 0) + _signed(line, rule.normal_side)
    for account_no, delta_fen in sums.items():
        _defer(tx, account_no, delta_fen)


def apply_sum(tx: Transaction, account_no: str, side: str, total_fen: int,
              work_date: str) -> bool:
    """Apply the sum of several customer lines on one side as one change, if the account's
    rules allow the whole sum (else nothing changes and the caller posts them one by
    one, which finds exactly the lines refused)."""
    return tx.execute(_APPLY, (side, total_fen, total_fen, account_no, side, total_fen,
                               work_date)) == 1


def apply_sums(tx: Transaction, sums: dict[tuple[str, str], int], side: str,
               insufficient_code: str) -> None:
    """Apply, per (customer account, work date), the sum of many lines that raise the
    account's balance (`side` is its normal side), with one statement for all: all or
    none. Such a line is refused only by an account that is closed or is none of ours;
    then the others are undone and the refusal a line of that sum would get raises (a
    bulk posting whose accounts were read in the same transaction meets one only if
    another writer changed them meanwhile)."""
    keys = sorted(sums)  # rows locked in account order, as `flush` does
    changed = tx.executemany(_APPLY, [
        (side, sums[key], sums[key], key[0], side, sums[key], key[1]) for key in keys])
    if changed == len(keys):
        return
    taking = set()
    for start in range(0, len(keys), 500):
        chunk = [account_no for account_no, _ in keys[start:start + 500]]
        taking.update(row[0] for row in tx.query(
            "SELECT account_no FROM ledger_account WHERE status <> 'closed' AND account_no"
            f" IN ({', '.join('?' * len(chunk))})", chunk))
    refused = next(key for key in keys if key[0] not in taking)
    tx.executemany(_UNDO, [(side, sums[key], sums[key], key[0]) for key in keys
                           if key[0] in taking])
    raise _refusal(tx, Line(refused[0], side, sums[refused]), refused[1], insufficient_code)


def undo_lines(tx: Transaction, lines: tuple[Line, ...], rules: Rules) -> None:
    """Take back lines this posting applied; nothing else has seen them yet."""
    for line in reversed(lines):
        rule = rules.get(line.account_no)
        if rule is not None and (rule.negative_ok or rule.normal_side == line.side):
            _defer(tx, line.account_no, -_signed(line, rule.normal_side))
        else:
            tx.execute(_UNDO, (line.side, line.amount_fen, line.amount_fen, line.account_no))


def flush(tx: Transaction) -> None:
    """Write every deferred internal balance change of the transaction, in account order:
    two transactions that flush the same accounts lock their rows in the same order, so
    gateway processes sharing a PostgreSQL database never deadlock on them."""
    deferred = tx.cache.get(DEFERRED)
    if deferred:
        for account_no in sorted(deferred):
            _write(tx, account_no, deferred.pop(account_no))


def _signed(line: Line, normal_side: str) -> int:
    return line.amount_fen if line.side == normal_side else -line.amount_fen


def _defer(tx: Transaction, account_no: str, delta_fen: int) -> None:
    deferred = tx.cache.get(DEFERRED)
    if deferred is None:
        deferred = tx.cache[DEFERRED] = {}
        tx.keep_across_rollback(DEFERRED)
        tx.on_flush(flush)
    deferred[account_no] = deferred.get(account_no, 0) + delta_fen


def _write(tx: Transaction, account_no: str, delta_fen: int) -> None:
    if delta_fen:
        changed = tx.execute(_ADD, (delta_fen, account_no))
        assert changed == 1, f"internal account {account_no} exists (install the ledger)"


def _refusal(tx: Transaction, line: Line, work_date: str,
             insufficient_code: str) -> LedgerError:
    """Why the conditional UPDATE refused `line`."""
    return debit_refusal(tx, line.account_no, line.amount_fen, work_date,
                         insufficient_code, covered=False) or LedgerError(
        insufficient_code, line.amount_fen, "at most the account's available balance",
        "amount_fen")


def debit_refusal(tx: Transaction, account_no: str, amount_fen: int, work_date: str,
                  insufficient_code: str, covered: bool = True) -> LedgerError | None:
    """Why a debit of `amount_fen` on the account would be refused on `work_date` (the
    rules of `_APPLY`, read, nothing written), or None when it would be taken. With
    `covered` False the balance is taken as short of the amount (the UPDATE said so)."""
    row = tx.query_one(
        "SELECT status, frozen_until, balance_fen, negative_ok FROM ledger_account"
        " WHERE account_no = ?",
        (account_no,),
    )
    if row is None:
        return LedgerError("account_not_found", account_no, "an account of ours",
                           "account_no")
    status, frozen_until, balance_fen, negative_ok = row
    if status == "closed":
        return LedgerError("account_closed", account_no, "an open account", "account_no")
    if status == "frozen" and frozen_until >= work_date:
        return LedgerError("account_frozen", account_no,
                           f"no debits until the freeze lapses after {frozen_until}",
                           "account_no")
    if covered and (negative_ok or int(balance_fen) >= amount_fen):
        return None
    # The account's balance here is what it can pay: money on hold has already left it
    # (a hold moves it to 4001), so the figure is the available balance, not the balance
    # a statement shows with held money counted in (customer_balance's ledger_balance).
    return LedgerError(insufficient_code, amount_fen,
                       f"at most the available balance of {balance_fen} fen (the "
                       "account's balance less its funds on hold)", "amount_fen")
