"""Reading the books: balances, the trial balance, the digest, account statements."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from datetime import date

from ledger.db import Transaction
from ledger.errors import LedgerError
from ledger.numbers import make_voucher_no
from ledger.postings import work_date_text
from ledger.types import Statement, StatementLine, SubjectRow, TrialBalance

# Entries whose lines are fetched per round trip while hashing the whole book.
DIGEST_CHUNK_ENTRIES = 5_000


def balance(tx: Transaction, account_no: str) -> int:
    """The account's balance in fen, on its normal side (a deposit's credit balance)."""
    tx.flush()
    row = tx.query_one("SELECT balance_fen FROM ledger_account WHERE account_no = ?",
                       (account_no,))
    if row is None:
        raise LedgerError("account_not_found", account_no, "an account of ours", "account_no")
    return int(row[0])


def entry_count(tx: Transaction) -> int:
    row = tx.query_one("SELECT COUNT(*) FROM ledger_entry")
    return int(row[0]) if row else 0


def digest(tx: Transaction) -> str:
    """sha256 over every line of every entry in posting order, as `sha256:<hex>`.

    Each line contributes `entry_id|event_id|work_date|account_no|side|amount_fen\n`,
    so two runs that posted the same events in the same order have the same digest.
    """
    hasher = hashlib.sha256()
    for line in book_lines(tx):
        hasher.update(digest_line(line))
    return "sha256:" + hasher.hexdigest()


def book_lines(tx: Transaction) -> Iterator[tuple]:
    """Every line of the book in posting order, a chunk of entries a query:
    (entry_id, event_id, work_date, account_no, side, amount_fen)."""
    row = tx.query_one("SELECT MAX(entry_id) FROM ledger_entry")
    last_entry_id = int(row[0]) if row and row[0] is not None else 0
    for first_id in range(1, last_entry_id + 1, DIGEST_CHUNK_ENTRIES):
        yield from tx.query(
            "SELECT e.entry_id, e.event_id, e.work_date, l.account_no, l.side, l.amount_fen"
            " FROM ledger_entry e JOIN ledger_line l ON l.entry_id = e.entry_id"
            " WHERE e.entry_id >= ? AND e.entry_id < ? ORDER BY e.entry_id, l.line_no",
            (first_id, first_id + DIGEST_CHUNK_ENTRIES),
        )


def digest_line(line: tuple) -> bytes:
    """What one line adds to a digest: `entry_id|event_id|work_date|account_no|side|
    amount_fen` and a newline (the first six values of `line`)."""
    return "|".join(str(part) for part in line[:6]).encode() + b"\n"


def trial_balance(tx: Transaction, through: date | str | None = None) -> TrialBalance:
    """Turnover and balance per subject over every entry up to `through` (default: all)."""
    last_day = work_date_text(through) if through is not None else "9999-12-31"
    # Running balances are today's, so detail agreement is checked only for the whole
    # book; a past date's totals are checked by the debit-credit equality alone.
    agree = accounts_agree(tx) if through is None else True
    return subject_trial_balance(tx, subject_totals(subject_sums(tx, last_day)), agree)


def subject_sums(tx: Transaction, last_day: str) -> dict[tuple[str, str], list[int]]:
    """[debit, credit] fen per (work date, subject) over every line dated up to
    `last_day`, in one pass over the lines (each joined to its entry and account)."""
    sums: dict[tuple[str, str], list[int]] = {}
    for work_date, subject, debit_fen, credit_fen in tx.query(
            "SELECT e.work_date, a.subject,"
            " SUM(CASE WHEN l.side = 'D' THEN l.amount_fen ELSE 0 END),"
            " SUM(CASE WHEN l.side = 'C' THEN l.amount_fen ELSE 0 END)"
            " FROM ledger_line l JOIN ledger_entry e ON e.entry_id = l.entry_id"
            " JOIN ledger_account a ON a.account_no = l.account_no"
            " WHERE e.work_date <= ? GROUP BY e.work_date, a.subject", (last_day,)):
        sums[(work_date, subject)] = [int(debit_fen), int(credit_fen)]
    return sums


def subject_totals(sums: dict[tuple[str, str], list[int]]) -> dict[str, list[int]]:
    """`subject_sums` added up over the dates: [debit, credit] fen per subject."""
    totals: dict[str, list[int]] = {}
    for (_, subject), (debit_fen, credit_fen) in sums.items():
        pair = totals.setdefault(subject, [0, 0])
        pair[0] += debit_fen
        pair[1] += credit_fen
    return totals


def subject_trial_balance(tx: Transaction,
                          totals: Mapping[str, Sequence[int]],
                          accounts_agree_flag: bool = True) -> TrialBalance:
    """The trial balance of cumulative [debit, credit] totals per subject, over every
    subject on the balance sheet (those without lines at zero)."""
    rows = tuple(SubjectRow(code, name, int(klass), side, *totals.get(code, (0, 0)))
                 for code, name, klass, side in tx.query(
                     "SELECT code, name_zh, class, normal_side FROM ledger_subject"
                     " WHERE on_balance = 1 ORDER BY code"))
    return summarise(rows, accounts_agree_flag)


def summarise(rows: tuple[SubjectRow, ...], accounts_agree_flag: bool) -> TrialBalance:
    totals = {"assets": 0, "liabilities": 0, "equity": 0, "income": 0, "expenses": 0}
    for row in rows:
        net_fen = row.debit_fen - row.credit_fen  # positive: a debit balance
        if row.klass == 1:
            totals["assets"] += net_fen
        elif row.klass == 2:
            totals["liabilities"] -= net_fen
        elif row.klass == 3:
            totals["equity"] -= net_fen
        elif row.klass == 4:
            # A common subject is an asset while its balance is on the debit side and a
            # liability while it is on the credit side.
            totals["assets" if net_fen > 0 else "liabilities"] += abs(net_fen)
        elif row.klass == 5 and row.normal_side == "C":
            totals["income"] -= net_fen
        elif row.klass == 5:
            totals["expenses"] += net_fen
    return TrialBalance(
        rows=rows,
        debit_total_fen=sum(row.debit_fen for row in rows),
        credit_total_fen=sum(row.credit_fen for row in rows),
        assets_fen=totals["assets"], liabilities_fen=totals["liabilities"],
        equity_fen=totals["equity"], income_fen=totals["income"],
        expenses_fen=totals["expenses"], accounts_agree=accounts_agree_flag,
    )


def accounts_agree(tx: Transaction) -> bool:
    """Whether every account's running balance equals the sum of its lines (总分核对)."""
    return not disagreeing_accounts(tx)


def disagreeing_accounts(tx: Transaction) -> list[tuple[str, int, int]]:
    """(account, running balance, balance from its lines) for each account that differs."""
    tx.flush()
    rows = tx.query(
        "SELECT a.account_no, a.balance_fen, COALESCE(SUM(CASE WHEN l.side = a.normal_side"
        " THEN l.amount_fen ELSE -l.amount_fen END), 0)"
        " FROM ledger_account a LEFT JOIN ledger_line l ON l.account_no = a.account_no"
        " GROUP BY a.account_no, a.balance_fen"
        " HAVING a.balance_fen <> COALESCE(SUM(CASE WHEN l.side = a.normal_side"
        " THEN l.amount_fen ELSE -l.amount_fen END), 0)"
    )
    return [(r[0], int(r[1]), int(r[2])) for r in rows]


def statement(tx: Transaction, account_no: str, date_from: date | str,
              date_to: date | str) -> Statement:
    """Every line on the account between two work dates, with the running balance."""
    first_day, last_day = work_date_text(date_from), work_date_text(date_to)
    account = tx.query_one("SELECT name, normal_side FROM ledger_account"
                           " WHERE account_no = ?", (account_no,))
    if account is None:
        raise LedgerError("account_not_found", account_no, "an account of ours", "account_no")
    name, normal_side = account
    signed = f"CASE WHEN l.side = '{normal_side}' THEN l.amount_fen ELSE -l.amount_fen END"
    opening = tx.query_one(
        f"SELECT COALESCE(SUM({signed}), 0) FROM ledger_line l JOIN ledger_entry e"
        " ON e.entry_id = l.entry_id WHERE l.account_no = ? AND e.work_date < ?",
        (account_no, first_day),
    )
    rows = tx.query(
        "SELECT e.entry_id, e.voucher_kind, e.work_date, e.op, e.ref, l.side, l.amount_fen"
        " FROM ledger_line l JOIN ledger_entry e ON e.entry_id = l.entry_id"
        " WHERE l.account_no = ? AND e.work_date >= ? AND e.work_date <= ?"
        " ORDER BY l.entry_id, l.line_no",
        (account_no, first_day, last_day),
    )
    running_fen = int(opening[0]) if opening else 0
    opening_fen, lines = running_fen, []
    for entry_id, kind, day, op, ref, side, amount_fen in rows:
        running_fen += amount_fen if side == normal_side else -amount_fen
        lines.append(StatementLine(entry_id, make_voucher_no(kind, entry_id), day, op, ref,
                                   side, int(amount_fen), running_fen))
    return Statement(account_no, name, first_day, last_day, opening_fen, running_fen,
                     tuple(lines))
