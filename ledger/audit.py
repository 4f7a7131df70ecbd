"""The auditors' re-check of the whole book against every figure day end stored.

Day end checks only the lines since the last close against what that close stored
(ledger.daybook). `audit_book` derives everything again from every line of the history:

- every account's running balance equals the sum of all its lines (总分核对), and its
  balance at the last closed day (`day_end_balance_fen`) the sum of its lines dated up
  to that day;
- debits equal credits over the whole book, and the balance equation holds;
- each closed day's stored entry count; for each day with stored figures, its subject
  totals and turnover; for each chained digest, the digest recomputed from the previous
  closed day's stored digest and the lines dated between the two.

A day closed before the ledger kept figures (schema version 2) keeps the whole-book
digest of its time, which later entries dated after it make impossible to recompute;
its entry count is checked and it starts the chain of the days after it.

It reads the whole book, so it takes time with history: run it on a backup copy, or
outside business hours (in SQLite it holds the write lock while it reads).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

from ledger import daybook
from ledger.db import Transaction
from ledger.reports import (book_lines, digest_line, disagreeing_accounts, entry_count,
                            subject_sums, subject_totals, subject_trial_balance)

FINDINGS_LISTED_MAX = 1_000


@dataclass(frozen=True)
class Finding:
    """One figure that differs from what the lines give."""

    check: str  # running_balance, day_end_balance, books_balance, day_entries,
    #             day_totals, day_digest
    item: str  # the account, the work date, or "work date subject"
    stored: Any
    recomputed: Any

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "item": self.item, "stored": self.stored,
                "recomputed": self.recomputed}


@dataclass(frozen=True)
class Audit:
    entries: int
    days: int  # closed work dates
    findings: tuple[Finding, ...]

    @property
    def clean(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {"entries": self.entries, "days": self.days, "clean": self.clean,
                "findings": [f.to_dict() for f in self.findings[:FINDINGS_LISTED_MAX]],
                "findings_count": len(self.findings)}


@dataclass(frozen=True)
class _Day:
    work_date: str
    entries: int
    digest: str
    has_figures: bool
    chained: bool


def audit_book(tx: Transaction) -> Audit:
    """Re-check the whole book and every stored day-end figure."""
    tx.flush()
    days = [_Day(r[0], int(r[1]), r[2], r[3] is not None, bool(r[4])) for r in tx.query(
        "SELECT work_date, entries, digest, next_entry_id, chained FROM ledger_day"
        " ORDER BY work_date")]
    findings = [Finding("running_balance", account_no, balance_fen, lines_fen)
                for account_no, balance_fen, lines_fen in disagreeing_accounts(tx)]
    sums = subject_sums(tx, "9999-12-31")
    findings += _books_balance(tx, sums)
    findings += _day_entries(tx, days)
    findings += _day_totals(tx, days, sums)
    if days and days[-1].has_figures:
        findings += _day_end_balances(tx, days[-1].work_date)
    findings += _digests(tx, days)
    return Audit(entry_count(tx), len(days), tuple(findings))


def _books_balance(tx: Transaction, sums: dict[tuple[str, str], list[int]]
                   ) -> list[Finding]:
    whole = subject_trial_balance(tx, subject_totals(sums))
    if whole.balanced:
        return []
    return [Finding("books_balance", "all", whole.debit_total_fen, whole.credit_total_fen)]


def _day_entries(tx: Transaction, days: list[_Day]) -> list[Finding]:
    counted = {work_date: int(count) for work_date, count in tx.query(
        "SELECT work_date, COUNT(*) FROM ledger_entry GROUP BY work_date")}
    return [Finding("day_entries", day.work_date, day.entries, counted.get(day.work_date, 0))
            for day in days if day.entries != counted.get(day.work_date, 0)]


def _day_totals(tx: Transaction, days: list[_Day], sums: dict[tuple[str, str], list[int]]
                ) -> list[Finding]:
    """Each stored subject row against the lines: cumulative through its day, and the
    day's own turnover."""
    by_date: dict[str, dict[str, list[int]]] = {}
    for (work_date, subject), pair in sums.items():
        by_date.setdefault(work_date, {})[subject] = pair
    dates = sorted(by_date)
    cumulative: dict[str, list[int]] = {}
    walked = 0
    findings = []
    for day in days:
        while walked < len(dates) and dates[walked] <= day.work_date:
            for subject, (debit_fen, credit_fen) in by_date[dates[walked]].items():
                pair = cumulative.setdefault(subject, [0, 0])
                pair[0] += debit_fen
                pair[1] += credit_fen
            walked += 1
        stored = daybook.stored_subjects(tx, day.work_date) if day.has_figures else None
        for row, day_debit_fen, day_credit_fen in stored or ():
            turnover = by_date.get(day.work_date, {}).get(row.code, [0, 0])
            expected = (*cumulative.get(row.code, (0, 0)), *turnover)
            found = (row.debit_fen, row.credit_fen, day_debit_fen, day_credit_fen)
            if found != tuple(expected):
                findings.append(Finding("day_totals", f"{day.work_date} {row.code}",
                                        list(found), list(expected)))
    return findings


def _day_end_balances(tx: Transaction, last_day: str) -> list[Finding]:
    balances = daybook.account_balances(tx, last_day)
    return [Finding("day_end_balance", account_no, int(stored_fen),
                    balances.get(account_no, 0))
            for account_no, stored_fen in tx.query(
                "SELECT account_no, day_end_balance_fen FROM ledger_account"
                " ORDER BY account_no")
            if int(stored_fen) != balances.get(account_no, 0)]


def _digests(tx: Transaction, days: list[_Day]) -> list[Finding]:
    """Recompute every chained digest in one pass over the book in posting order: a
    line belongs to the first closed day on or after its work date."""
    dates = [day.work_date for day in days]
    hashers: dict[int, Any] = {}
    for index, day in enumerate(days):
        if day.chained:
            hashers[index] = hashlib.sha256()
            if index:
                hashers[index].update(days[index - 1].digest.encode() + b"\n")
    if not hashers:
        return []
    for line in book_lines(tx):
        hasher = hashers.get(bisect_left(dates, line[2]))
        if hasher is not None:
            hasher.update(digest_line(line))
    findings = []
    for index, hasher in hashers.items():
        recomputed = "sha256:" + hasher.hexdigest()
        if recomputed != days[index].digest:
            findings.append(Finding("day_digest", days[index].work_date, days[index].digest,
                                    recomputed))
    return findings
