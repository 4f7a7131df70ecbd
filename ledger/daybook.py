"""The figures each closed day keeps, so that the next day end reads only its own lines.

At every close the ledger stores:

- in `ledger_day`, the day's digest, chained: sha256 over the previous closed day's
  digest and a newline, then each line of the entries dated after that day up to this
  one, in posting order (`reports.digest_line`; the first close of a book hashes its
  lines alone). `first_entry_id` to `last_entry_id` are the entries the close read:
  every entry dated that day lies between them. `next_entry_id` is the lowest entry
  dated after the day (else the next entry id to come), where the next close starts;
- in `ledger_day_subject`, per subject on the balance sheet, the debit and credit totals
  of every line dated up to the day (what `trial_balance(tx, day)` sums) and the day's
  own debit and credit turnover;
- in `ledger_account.day_end_balance_fen`, each account's balance as at the day (its
  lines dated up to it), written for the accounts that moved.

No entry can be dated on or before a closed day, so every entry not yet covered by a
close has an id at or above the last close's `next_entry_id`: the next close reads from
there (the day's lines and the few entries already dated later), never the history.

A book closed before these figures existed (schema version 2) has none for its last
closed day: the first close after the upgrade computes them once from the whole book
(`last_closed`), and every close after it is incremental.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

from ledger.db import Transaction
from ledger.reports import digest_line, subject_sums, subject_totals
from ledger.types import SubjectRow

# Entries whose lines one query of a close fetches.
READ_CHUNK_ENTRIES = 5_000
# Accounts named in one query when looking up moved accounts.
ACCOUNTS_PER_QUERY = 500

log = logging.getLogger("paygate.ledger")

_SUBJECTS = "SELECT code FROM ledger_subject WHERE on_balance = 1 ORDER BY code"


@dataclass(frozen=True)
class Closed:
    """The last closed day's stored figures (work date "" for a book never closed)."""

    work_date: str
    digest: str
    next_entry_id: int
    totals: dict[str, tuple[int, int]]  # subject: cumulative (debit, credit) fen


@dataclass
class DayRead:
    """What a close read: the lines of the entries dated after the last close."""

    work_date: str
    first_entry_id: int
    last_entry_id: int
    next_entry_id: int = 0
    entries: int = 0  # entries dated the day itself
    digest: str = ""
    # account: signed change over every line read (on its normal side), and over the
    # lines dated up to the day
    since: dict[str, int] = field(default_factory=dict)
    closing: dict[str, int] = field(default_factory=dict)
    # subject: [debit, credit] fen, cumulative through the day, and of the day alone
    totals: dict[str, list[int]] = field(default_factory=dict)
    turnover: dict[str, list[int]] = field(default_factory=dict)


def last_closed(tx: Transaction) -> Closed:
    """The figures of the last closed day, computed once from the whole book when that
    day was closed before the ledger kept them."""
    row = tx.query_one("SELECT work_date, digest, next_entry_id FROM ledger_day"
                       " ORDER BY work_date DESC LIMIT 1")
    if row is None:
        return Closed("", "", 1, {})
    day, day_digest, next_entry_id = row
    if next_entry_id is None:
        next_entry_id = _build_figures(tx, day)
    totals = {subject: (int(debit), int(credit)) for subject, debit, credit in tx.query(
        "SELECT subject, debit_fen, credit_fen FROM ledger_day_subject WHERE work_date = ?",
        (day,))}
    return Closed(day, day_digest, int(next_entry_id), totals)


def read_day(tx: Transaction, before: Closed, day: str) -> DayRead:
    """Read the entries dated after `before` (from its `next_entry_id` on) for closing
    `day`: the chained digest, the subject totals and the accounts' changes."""
    row = tx.query_one("SELECT MAX(entry_id) FROM ledger_entry")
    last_entry_id = int(row[0]) if row and row[0] is not None else 0
    read = DayRead(day, before.next_entry_id, last_entry_id, next_entry_id=last_entry_id + 1)
    read.totals = {subject: list(pair) for subject, pair in before.totals.items()}
    hasher = hashlib.sha256()
    if before.digest:
        hasher.update(before.digest.encode() + b"\n")
    counted = 0
    for first_id in range(before.next_entry_id, last_entry_id + 1, READ_CHUNK_ENTRIES):
        for line in tx.query(
                "SELECT e.entry_id, e.event_id, e.work_date, l.account_no, l.side,"
                " l.amount_fen, a.subject, a.normal_side FROM ledger_entry e"
                " JOIN ledger_line l ON l.entry_id = e.entry_id"
                " JOIN ledger_account a ON a.account_no = l.account_no"
                " WHERE e.entry_id >= ? AND e.entry_id < ? AND e.work_date > ?"
                " ORDER BY e.entry_id, l.line_no",
                (first_id, first_id + READ_CHUNK_ENTRIES, before.work_date)):
            entry_id, _, work_date, account_no, side, amount_fen, subject, normal_side = line
            signed = amount_fen if side == normal_side else -amount_fen
            read.since[account_no] = read.since.get(account_no, 0) + signed
            if work_date > day:
                read.next_entry_id = min(read.next_entry_id, entry_id)
                continue
            hasher.update(digest_line(line))
            read.closing[account_no] = read.closing.get(account_no, 0) + signed
            column = 0 if side == "D" else 1
            read.totals.setdefault(subject, [0, 0])[column] += amount_fen
            if work_date == day:
                read.turnover.setdefault(subject, [0, 0])[column] += amount_fen
                if entry_id != counted:
                    read.entries, counted = read.entries + 1, entry_id
    read.digest = "sha256:" + hasher.hexdigest()
    return read


def disagreeing(tx: Transaction, read: DayRead) -> list[tuple[str, int, int]]:
    """(account, running balance, balance from the last close and the lines since) for
    each account that differs (总分核对): the accounts that did not move are checked
    against their balance at the last close, with one pass over the accounts."""
    tx.flush()
    found = []
    differing = set()
    for account_no, balance_fen, day_end_fen in tx.query(
            "SELECT account_no, balance_fen, day_end_balance_fen FROM ledger_account"
            " WHERE balance_fen <> day_end_balance_fen"):
        differing.add(account_no)
        expected_fen = int(day_end_fen) + read.since.get(account_no, 0)
        if int(balance_fen) != expected_fen:
            found.append((account_no, int(balance_fen), expected_fen))
    # A moved account whose balance still equals its last close's disagrees unless its
    # lines since net to nothing.
    unchanged = sorted(account_no for account_no, change_fen in read.since.items()
                       if change_fen and account_no not in differing)
    for start in range(0, len(unchanged), ACCOUNTS_PER_QUERY):
        chunk = unchanged[start:start + ACCOUNTS_PER_QUERY]
        for account_no, balance_fen, day_end_fen in tx.query(
                "SELECT account_no, balance_fen, day_end_balance_fen FROM ledger_account"
                f" WHERE account_no IN ({', '.join('?' * len(chunk))})", chunk):
            found.append((account_no, int(balance_fen),
                          int(day_end_fen) + read.since[account_no]))
    return sorted(found)


def record(tx: Transaction, read: DayRead) -> None:
    """Store the closed day's figures (`read`) and mark the day closed."""
    tx.executemany(
        "UPDATE ledger_account SET day_end_balance_fen = day_end_balance_fen + ?"
        " WHERE account_no = ?",
        [(change_fen, account_no) for account_no, change_fen in sorted(read.closing.items())
         if change_fen])
    tx.execute("INSERT INTO ledger_day (work_date, entries, digest, first_entry_id,"
               " last_entry_id, next_entry_id, chained) VALUES (?, ?, ?, ?, ?, ?, 1)",
               (read.work_date, read.entries, read.digest, read.first_entry_id,
                read.last_entry_id, read.next_entry_id))
    _insert_subjects(tx, read.work_date, read.totals, read.turnover)


def stored_subjects(tx: Transaction, day: str
                    ) -> list[tuple[SubjectRow, int, int]] | None:
    """Per subject of a closed day: its cumulative row through the day and the day's
    debit and credit turnover; None for a day without stored figures."""
    rows = tx.query(
        "SELECT s.code, s.name_zh, s.class, s.normal_side, f.debit_fen, f.credit_fen,"
        " f.day_debit_fen, f.day_credit_fen FROM ledger_day_subject f"
        " JOIN ledger_subject s ON s.code = f.subject WHERE f.work_date = ?"
        " ORDER BY s.code", (day,))
    if not rows:
        return None
    return [(SubjectRow(r[0], r[1], int(r[2]), r[3], int(r[4]), int(r[5])), int(r[6]),
             int(r[7])) for r in rows]


def entry_span(tx: Transaction, day: str) -> tuple[int, int] | None:
    """The entry ids between which every entry dated the closed `day` lies; None for a
    day without stored figures."""
    row = tx.query_one("SELECT first_entry_id, last_entry_id FROM ledger_day"
                       " WHERE work_date = ?", (day,))
    if row is None or row[0] is None:
        return None
    return int(row[0]), int(row[1])


def account_balances(tx: Transaction, last_day: str) -> dict[str, int]:
    """Each account's balance from its lines dated up to `last_day` (accounts with
    lines only): the whole history, for computing figures afresh."""
    return {account_no: int(balance_fen) for account_no, balance_fen in tx.query(
        "SELECT l.account_no, SUM(CASE WHEN l.side = a.normal_side THEN l.amount_fen"
        " ELSE -l.amount_fen END) FROM ledger_line l"
        " JOIN ledger_entry e ON e.entry_id = l.entry_id"
        " JOIN ledger_account a ON a.account_no = l.account_no"
        " WHERE e.work_date <= ? GROUP BY l.account_no", (last_day,))}


def _build_figures(tx: Transaction, day: str) -> int:
    """Compute from the whole book the figures of `day`, closed before the ledger kept
    them, and store them; the entry id the next close starts at."""
    tx.execute("UPDATE ledger_account SET day_end_balance_fen = 0"
               " WHERE day_end_balance_fen <> 0")
    tx.executemany("UPDATE ledger_account SET day_end_balance_fen = ? WHERE account_no = ?",
                   [(balance_fen, account_no) for account_no, balance_fen
                    in sorted(account_balances(tx, day).items()) if balance_fen])
    sums = subject_sums(tx, day)
    totals = subject_totals(sums)
    turnover = {subject: pair for (work_date, subject), pair in sums.items()
                if work_date == day}
    after = tx.query_one("SELECT MIN(entry_id) FROM ledger_entry WHERE work_date > ?", (day,))
    last = tx.query_one("SELECT MAX(entry_id) FROM ledger_entry")
    next_entry_id = int(after[0]) if after and after[0] is not None \
        else (int(last[0]) if last and last[0] is not None else 0) + 1
    span = tx.query_one("SELECT MIN(entry_id), MAX(entry_id) FROM ledger_entry"
                        " WHERE work_date = ?", (day,))
    first_id, last_id = (int(span[0]), int(span[1])) if span and span[0] is not None \
        else (next_entry_id, next_entry_id - 1)
    tx.execute("UPDATE ledger_day SET first_entry_id = ?, last_entry_id = ?,"
               " next_entry_id = ? WHERE work_date = ?",
               (first_id, last_id, next_entry_id, day))
    _insert_subjects(tx, day, totals, turnover)
    log.info("event=ledger_day_figures_built work_date=%s next_entry_id=%s", day,
             next_entry_id)
    return next_entry_id


def _insert_subjects(tx: Transaction, day: str, totals: dict[str, list[int]],
                     turnover: dict[str, list[int]]) -> None:
    rows = []
    for (code,) in tx.query(_SUBJECTS):
        debit_fen, credit_fen = totals.get(code, (0, 0))
        day_debit_fen, day_credit_fen = turnover.get(code, (0, 0))
        rows.append((day, code, debit_fen, credit_fen, day_debit_fen, day_credit_fen))
    tx.insert_rows("INSERT INTO ledger_day_subject (work_date, subject, debit_fen,"
                   " credit_fen, day_debit_fen, day_credit_fen) VALUES", rows)
