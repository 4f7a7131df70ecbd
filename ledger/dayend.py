"""Day end (日结): check the books, close the work date, write the day's reports.

`close_day` refuses to close books that do not balance or whose detail ledgers
disagree with the general ledger (总分核对); once closed, that date and every earlier
one take no postings (`work_date_closed`). It reads only the entries dated after the
last close, checking them against the figures that close stored (ledger.daybook), so
day end costs the day's work whatever the length of the history; `ledger.audit`
re-checks the whole book and every stored figure.

The reports are files an accountant reads:

- the daily statement (日计表), `daily-statement-YYYY-MM-DD.csv`: per subject the
  opening balance, the day's debit and credit turnover, the closing balance, and the
  totals, with the balance equation at the foot;
- the subject day sheets (科目日结单), `subject-day-sheets-YYYY-MM-DD.txt`: per subject
  the day's vouchers with their debit and credit amounts and counts.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

from gateway.money import format_yuan, format_yuan_grouped
from ledger import daybook
from ledger.db import Transaction
from ledger.errors import LedgerError
from ledger.numbers import make_voucher_no
from ledger.postings import check_work_date_open, work_date_text
from ledger.reports import subject_trial_balance, trial_balance
from ledger.types import TrialBalance


@dataclass(frozen=True)
class DayClose:
    work_date: str
    entries: int
    digest: str
    trial_balance: TrialBalance


@dataclass(frozen=True)
class DayRow:
    """One subject on the daily statement."""

    code: str
    name: str
    normal_side: str
    opening_fen: int
    debit_fen: int
    credit_fen: int
    closing_fen: int


def close_day(tx: Transaction, work_date: date | str) -> DayClose:
    """Close `work_date` after checking that the books balance and that every account
    agrees with its lines: the trial balance is the last close's subject totals plus the
    lines since, and each account's running balance must equal its balance at the last
    close plus its lines since."""
    day = work_date_text(work_date)
    check_work_date_open(tx, day, posting=False)
    if tx.dialect == "postgresql":
        # Wait for every transaction still inserting entries and keep new ones out until
        # this one ends: an entry committed later under a lower id would be missed by
        # the next close, which starts reading after this one.
        tx.execute("LOCK TABLE ledger_entry IN SHARE MODE")
    before = daybook.last_closed(tx)
    read = daybook.read_day(tx, before, day)
    disagreeing = daybook.disagreeing(tx, read)
    if disagreeing:
        raise LedgerError("detail_ledgers_disagree", disagreeing[:10],
                          "every account's balance equal to the sum of its lines")
    balance = subject_trial_balance(tx, read.totals)
    if not balance.balanced:
        difference_fen = balance.debit_total_fen - balance.credit_total_fen
        raise LedgerError("books_do_not_balance", difference_fen,
                          "debits equal to credits and assets = liabilities + equity")
    daybook.record(tx, read)
    tx.cache.pop("last_closed", None)
    return DayClose(day, read.entries, read.digest, balance)


def day_rows(tx: Transaction, work_date: date | str) -> list[DayRow]:
    """The daily statement's rows: opening, turnover and closing per subject, from the
    figures stored at the day's close (from the whole book for a day closed before the
    ledger kept them, or one still open)."""
    day = work_date_text(work_date)
    stored = daybook.stored_subjects(tx, day)
    if stored is None:
        return day_rows_from_lines(tx, day)
    rows = []
    for row, debit_fen, credit_fen in stored:
        opening = replace(row, debit_fen=row.debit_fen - debit_fen,
                          credit_fen=row.credit_fen - credit_fen)
        rows.append(DayRow(row.code, row.name, row.normal_side, opening.balance_fen,
                           debit_fen, credit_fen, row.balance_fen))
    return rows


def day_trial_balance(tx: Transaction, work_date: date | str) -> TrialBalance:
    """The trial balance through `work_date`: from the figures stored at its close, or
    summed from the lines for a day without them."""
    day = work_date_text(work_date)
    stored = daybook.stored_subjects(tx, day)
    if stored is None:
        return trial_balance(tx, day)
    return subject_trial_balance(
        tx, {row.code: (row.debit_fen, row.credit_fen) for row, _, _ in stored})


def day_rows_from_lines(tx: Transaction, day: str) -> list[DayRow]:
    """`day_rows` summed from every line up to the day and up to the day before."""
    previous = (date.fromisoformat(day) - timedelta(days=1)).isoformat()
    opening = {row.code: row for row in trial_balance(tx, previous).rows}
    closing = trial_balance(tx, day).rows
    rows = []
    for row in closing:
        before = opening[row.code]
        rows.append(DayRow(row.code, row.name, row.normal_side, before.balance_fen,
                           row.debit_fen - before.debit_fen, row.credit_fen - before.credit_fen,
                           row.balance_fen))
    return rows


def write_day_reports(tx: Transaction, work_date: date | str,
                      directory: str | Path) -> list[Path]:
    """Write the daily statement and the subject day sheets; their paths."""
    day = work_date_text(work_date)
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    statement_path = folder / f"daily-statement-{day}.csv"
    sheets_path = folder / f"subject-day-sheets-{day}.txt"
    _write_daily_statement(tx, day, statement_path)
    sheets_path.write_text(_subject_day_sheets(tx, day), encoding="utf-8")
    return [statement_path, sheets_path]


def _write_daily_statement(tx: Transaction, day: str, path: Path) -> None:
    rows = day_rows(tx, day)
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["日计表 daily statement", day])
        out.writerow(["subject", "name", "side", "opening", "debit", "credit", "closing"])
        for row in rows:
            out.writerow([row.code, row.name, row.normal_side, format_yuan(row.opening_fen),
                          format_yuan(row.debit_fen), format_yuan(row.credit_fen),
                          format_yuan(row.closing_fen)])
        debit_fen = sum(row.debit_fen for row in rows)
        credit_fen = sum(row.credit_fen for row in rows)
        out.writerow(["total", "", "", "", format_yuan(debit_fen), format_yuan(credit_fen), ""])
        balance = day_trial_balance(tx, day)
        out.writerow(["assets", format_yuan(balance.assets_fen), "liabilities",
                      format_yuan(balance.liabilities_fen), "equity",
                      format_yuan(balance.equity_fen), "income - expenses",
                      format_yuan(balance.income_fen - balance.expenses_fen)])
        out.writerow(["balanced", str(balance.balanced).lower()])


def _subject_day_sheets(tx: Transaction, day: str) -> str:
    # A closed day's entries lie between the ids its close stored: read only those.
    first_id, last_id = daybook.entry_span(tx, day) or (0, 2 ** 63 - 1)
    rows = tx.query(
        "SELECT a.subject, s.name_zh, e.entry_id, e.voucher_kind, e.op, l.account_no, l.side,"
        " l.amount_fen FROM ledger_entry e JOIN ledger_line l ON l.entry_id = e.entry_id"
        " JOIN ledger_account a ON a.account_no = l.account_no"
        " JOIN ledger_subject s ON s.code = a.subject"
        " WHERE e.entry_id >= ? AND e.entry_id <= ? AND e.work_date = ?"
        " ORDER BY a.subject, l.entry_id, l.line_no",
        (first_id, last_id, day),
    )
    sections: dict[tuple[str, str], list[tuple]] = {}
    for row in rows:
        sections.setdefault((row[0], row[1]), []).append(row)
    out = [f"科目日结单 subject day sheets  {day}", ""]
    for (code, name), lines in sections.items():
        out += _sheet(code, name, lines)
    return "\n".join(out) + "\n"


def _sheet(code: str, name: str, lines: list[tuple]) -> list[str]:
    out = [f"{code} {name}", f"  {'voucher':<14}{'op':<16}{'account':<27}{'debit':>18}"
                              f"{'credit':>18}"]
    totals = {"D": [0, 0], "C": [0, 0]}
    for _, _, entry_id, kind, op, account_no, side, amount_fen in lines:
        totals[side][0] += 1
        totals[side][1] += amount_fen
        debit = format_yuan_grouped(amount_fen) if side == "D" else ""
        credit = format_yuan_grouped(amount_fen) if side == "C" else ""
        out.append(f"  {make_voucher_no(kind, entry_id):<14}{op:<16}{account_no:<27}"
                   f"{debit:>18}{credit:>18}")
    out.append(f"  debit vouchers {totals['D'][0]}, {format_yuan_grouped(totals['D'][1])}; "
               f"credit vouchers {totals['C'][0]}, {format_yuan_grouped(totals['C'][1])}")
    out.append("")
    return out
