"""How long day end takes on a book with a long history: `close_day` and the daily
statement of one day, from the figures the last close stored, against the same checks
summed over the whole book as day end made them before it kept figures.

    .venv/bin/python -m benchmarks.dayend_history [--history-lines 1000000]
        [--day-lines 10000] [--history-days 20] [--repeat 3] [--postgresql]

The book (a SQLite file, or with --postgresql a schema of its own on the test server of
ledger.fixtures, dropped afterwards) gets `--history-lines` lines of history, deposits
of two lines each through the ledger's own posting path, spread over `--history-days`
work dates each closed in turn; then one open day of `--day-lines` lines. Each
repetition then times, in turns, inside a transaction rolled back afterwards:

- `stored`: `close_day` as it is (the lines since the last close against its figures),
  then the day's statement rows (`day_rows`, from the figures just stored);
- `history`: what day end did before: every account against the sum of all its lines,
  the trial balance of the whole book (which checks the accounts again), the day's
  entry count, the digest of every line, the closed day's row, and the statement rows
  summed over the history up to the day and up to the day before.

Both give the same trial balance and statement (checked). Printed: each run's
milliseconds (wall clock and this process's CPU) and their medians, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import date, timedelta
from typing import Any

from benchmarks import runs
from ledger import LedgerError, connect
from ledger.dayend import close_day, day_rows, day_rows_from_lines
from ledger.postings import check_work_date_open
from ledger.reports import digest, disagreeing_accounts, trial_balance
from ledger.service import Ledger
from ledger.testing import WORK_DATE, customer_account

ACCOUNTS = 2_000
POSTINGS_PER_TRANSACTION = 5_000


class _RollBack(Exception):
    """Raised to undo a timed close."""


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--history-lines", type=int, default=1_000_000)
    parser.add_argument("--day-lines", type=int, default=10_000)
    parser.add_argument("--history-days", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgresql", action="store_true")
    return parser.parse_args()


def _post(db: Any, led: Ledger, accounts: list[str], first: int, count: int,
          day: str) -> None:
    """`count` deposits of two lines each dated `day`, event ids from `first` on."""
    for start in range(first, first + count, POSTINGS_PER_TRANSACTION):
        with db.transaction() as tx:
            for serial in range(start, min(start + POSTINGS_PER_TRANSACTION, first + count)):
                led.deposit(tx, f"d{serial}", accounts[serial % len(accounts)],
                            100 + serial % 9_000, day)


def fill(db: Any, led: Ledger, args: argparse.Namespace) -> str:
    """The history, closed day by day, and the open day; the open day's date."""
    accounts = [customer_account(n + 1) for n in range(ACCOUNTS)]
    with db.transaction() as tx:
        led.install(tx)
        for account_no in accounts:
            led.open_customer_account(tx, account_no, "张三", "personal", WORK_DATE)
    per_day = args.history_lines // 2 // args.history_days
    serial = 0
    for number in range(args.history_days):
        day = (WORK_DATE + timedelta(days=number)).isoformat()
        _post(db, led, accounts, serial, per_day, day)
        serial += per_day
        with db.transaction() as tx:
            close_day(tx, day)
    day = (WORK_DATE + timedelta(days=args.history_days)).isoformat()
    _post(db, led, accounts, serial, args.day_lines // 2, day)
    return day


def close_from_history(tx: Any, day: str) -> Any:
    """Day end as it was before the ledger stored figures: every check over the whole
    book, and the statement's rows summed over the history."""
    check_work_date_open(tx, day)
    if disagreeing_accounts(tx):
        raise LedgerError("detail_ledgers_disagree")
    balance = trial_balance(tx)
    if not balance.balanced:
        raise LedgerError("books_do_not_balance")
    row = tx.query_one("SELECT COUNT(*) FROM ledger_entry WHERE work_date = ?", (day,))
    tx.execute("INSERT INTO ledger_day (work_date, entries, digest) VALUES (?, ?, ?)",
               (day, int(row[0]), digest(tx)))
    return balance.rows, day_rows_from_lines(tx, day)


def close_from_figures(tx: Any, day: str) -> Any:
    closed = close_day(tx, day)
    return closed.trial_balance.rows, day_rows(tx, day)


def timed(db: Any, close: Any, day: str) -> tuple[float, float, Any]:
    """Milliseconds of wall clock and CPU of `close` in a transaction rolled back."""
    outcome: list[Any] = []
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        with db.transaction() as tx:
            outcome.append(close(tx, day))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            raise _RollBack
    except _RollBack:
        pass
    return wall * 1000, cpu * 1000, outcome[0]


def main() -> None:
    args = _arguments()
    with tempfile.TemporaryDirectory() as folder, \
            runs.database(args, folder, "dayend_history") as url:
        db, led = connect(url), Ledger()
        try:
            started = time.perf_counter()
            day = fill(db, led, args)
            filled_s = time.perf_counter() - started
            measured = []
            for _ in range(args.repeat):
                stored = timed(db, close_from_figures, day)
                history = timed(db, close_from_history, day)
                assert stored[2] == history[2], "the stored figures give the full computation's"
                measured.append({"stored_wall_ms": stored[0], "stored_cpu_ms": stored[1],
                                 "history_wall_ms": history[0],
                                 "history_cpu_ms": history[1]})
        finally:
            db.close()
    print(json.dumps({
        "history_lines": args.history_lines, "day_lines": args.day_lines,
        "history_days": args.history_days, "repeat": args.repeat,
        "database": "postgresql" if args.postgresql else "sqlite",
        "fill_s": round(filled_s, 1),
        **{f"{name}_median": round(statistics.median(r[name] for r in measured), 1)
           for name in measured[0]},
        "runs": [{k: round(v, 1) for k, v in r.items()} for r in measured]}))


if __name__ == "__main__":
    main()
