"""`paygate bench ledger`: durable postings per second, beside bare SQLite.

What is measured: outgoing-payment holds (the posting the gateway makes for every
payment: Dr payer, Cr holds in transit) into a SQLite file with
the shipped pragmas (WAL, synchronous=FULL), committed in groups of `batch_size`
postings per transaction (group commit: one fsync per group). Every posting runs the
whole engine: amount and date checks, idempotency by event id, the conditional balance
updates, the entry and its lines.

The baseline inserts exactly the same rows (the entry and its lines) into the same schema
with one plain INSERT per row, no checks and no balance updates, with the same pragmas
and batch size. The ratio says how much the bookkeeping costs on top of storing.

Latencies are per group: from the first posting of a group to its durable commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from ledger.db import Database
from ledger.postings import _insert_lines_sql
from ledger.service import Ledger
from ledger.testing import WORK_DATE, customer_account

# Postings per transaction (group commit): one fsync for each thousand postings.
BATCH_SIZE = 1_000
ACCOUNTS = 200
POSTINGS_QUICK = 20_000
POSTINGS_FULL = 200_000
HOLD_FEN = 100
BASELINE = "bare sqlite, same pragmas and batch size"


def run(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark; the CONTRACT.md §8 result object."""
    config = {"postings": POSTINGS_QUICK if quick else POSTINGS_FULL,
              "batch_size": BATCH_SIZE, "accounts": ACCOUNTS,
              "pragmas": {"journal_mode": "wal", "synchronous": "full"}}
    with tempfile.TemporaryDirectory(prefix="paygate-bench-") as folder:
        ledger_s, bare_s = _run(Path(folder), config["postings"])
    per_s = config["postings"] / sum(ledger_s)
    baseline_per_s = config["postings"] / sum(bare_s)
    result = {
        "name": "postings_durable", "per_s": round(per_s),
        "p50_ms": round(_percentile(ledger_s, 50) * 1000, 2),
        "p99_ms": round(_percentile(ledger_s, 99) * 1000, 2),
        "baseline": BASELINE, "baseline_per_s": round(baseline_per_s),
        "ratio": round(per_s / baseline_per_s, 3),
    }
    return {"bench": "ledger", "machine": _machine(), "config_sha256": _sha256(config),
            "results": [result]}


def _run(folder: Path, postings: int) -> tuple[list[float], list[float]]:
    """Seconds per group for the ledger and for the baseline.

    The two run group by group in turn, so that whatever else the machine is doing
    slows both alike and the ratio stays meaningful on a busy machine.
    """
    db, led = Database(str(folder / "ledger.db")), Ledger()
    accounts = _setup(db, led)
    bare = _Bare(folder / "bare.db")
    ledger_s: list[float] = []
    bare_s: list[float] = []
    for first in range(0, postings, BATCH_SIZE):
        numbers = range(first, min(first + BATCH_SIZE, postings))
        ledger_s.append(_ledger_group(db, led, accounts, numbers))
        bare_s.append(bare.group(numbers))
    with db.transaction() as tx:
        assert led.trial_balance(tx).balanced, "the benchmark's books balance"
        assert led.entry_count(tx) == postings + ACCOUNTS, "every posting was made"
    db.close()
    bare.close()
    return ledger_s, bare_s


def _ledger_group(db: Database, led: Ledger, accounts: list[str], numbers: range) -> float:
    started = time.perf_counter()
    with db.transaction() as tx:
        for n in numbers:
            led.hold(tx, f"bench:{n}", accounts[n % ACCOUNTS], HOLD_FEN, WORK_DATE, f"pay-{n}")
    return time.perf_counter() - started


def _setup(db: Database, led: Ledger) -> list[str]:
    accounts = [customer_account(n) for n in range(1, ACCOUNTS + 1)]
    with db.transaction() as tx:
        led.install(tx)
        for account_no in accounts:
            led.open_customer_account(tx, account_no, f"customer {account_no[-6:]}",
                                      "personal", WORK_DATE)
            led.deposit(tx, f"bench:open:{account_no}", account_no, 10**12, WORK_DATE)
    return accounts


class _Bare:
    """The same rows with plain INSERTs, on a schema installed the same way."""

    _ENTRY = ("INSERT INTO ledger_entry (event_id, op, fingerprint, voucher_kind, work_date,"
              " ref, depends_on, reverses, teller, result)"
              " VALUES (?, 'hold', ?, '30', ?, ?, NULL, NULL, 'gateway', '')"
              " RETURNING entry_id")

    def __init__(self, path: Path) -> None:
        db, led = Database(str(path)), Ledger()
        self.accounts = _setup(db, led)
        self.holds_account = led.internal_accounts["4001"]
        db.close()
        self.conn = sqlite3.connect(str(path), isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
            self.conn.execute(f"PRAGMA {pragma}")
        self.lines_sql = _insert_lines_sql(2)
        self.day = WORK_DATE.isoformat()

    def group(self, numbers: range) -> float:
        cur = self.conn.cursor()
        started = time.perf_counter()
        cur.execute("BEGIN IMMEDIATE")
        for n in numbers:
            account_no, ref = self.accounts[n % ACCOUNTS], f"pay-{n}"
            cur.execute(self._ENTRY, (f"bench:{n}",
                                      f"hold|{account_no}|{HOLD_FEN}|{self.day}|{ref}",
                                      self.day, ref))
            entry_id = cur.fetchone()[0]
            cur.execute(self.lines_sql, (entry_id, 1, account_no, "D", HOLD_FEN,
                                         entry_id, 2, self.holds_account, "C", HOLD_FEN))
        cur.execute("COMMIT")
        return time.perf_counter() - started

    def close(self) -> None:
        self.conn.close()


def _percentile(values: list[float], percent: int) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(percent / 100 * len(ordered)) - 1))
    return ordered[index]


def _machine() -> str:
    return (f"{os.cpu_count()} cores, {platform.machine()}, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}")


def _sha256(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


if __name__ == "__main__":
    print(json.dumps(run(quick=True)))
