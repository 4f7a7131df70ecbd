"""Helpers for tests and the demo: valid account numbers and ready-made books.

The pytest fixture that runs a test on both databases is in `ledger.fixtures`, so that
the demo can use these helpers without importing pytest.
"""

from __future__ import annotations

from datetime import date

from ledger.db import Database, connect
from ledger.numbers import make_customer, make_customer_account
from ledger.service import Ledger

# The work date tests use: a Monday that is a statutory working day.
WORK_DATE = date(2026, 12, 7)
_CURRENT_ACCOUNT_TYPE = {"personal": "101", "corporate": "103"}


def customer_account(sequence: int, kind: str = "personal") -> str:
    """The current account number of customer `sequence`, with valid check digits."""
    customer_no = make_customer(kind, sequence)
    return make_customer_account(customer_no, _CURRENT_ACCOUNT_TYPE[kind], 1)


# The holders of the demo's corporate accounts 1, 2 and 3, as `paygate serve --simulate`
# opens them and the README's example transfer names them (payer_name must be the
# holder's name as the ledger keeps it). The books prepared for a shared PostgreSQL
# database (gateway.fleet.prepare_books) open the same accounts under the same names.
DEMO_HOLDERS = ("示例一号公司", "示例二号公司", "示例三号公司")


def demo_holder(sequence: int) -> str:
    """The holder of demo corporate account `sequence` (`DEMO_HOLDERS`, then 示例4号公司
    and so on)."""
    if 1 <= sequence <= len(DEMO_HOLDERS):
        return DEMO_HOLDERS[sequence - 1]
    return f"示例{sequence}号公司"


def fresh_books(url: str = "sqlite:///:memory:", ledger: Ledger | None = None,
                clearing_fen: int = 0) -> tuple[Database, Ledger]:
    """An installed ledger on a new database, optionally with a funded clearing account."""
    db = connect(url)
    led = ledger or Ledger()
    with db.transaction() as tx:
        led.install(tx)
        if clearing_fen:
            led.fund_clearing(tx, "opening:clearing", clearing_fen, WORK_DATE)
    return db, led


def open_funded(db: Database, led: Ledger, sequence: int, name: str, amount_fen: int,
                kind: str = "personal", work_date: date = WORK_DATE) -> str:
    """Open a customer account and pay `amount_fen` into it; its number."""
    account_no = customer_account(sequence, kind)
    with db.transaction() as tx:
        led.open_customer_account(tx, account_no, name, kind, work_date)
        if amount_fen:
            led.deposit(tx, f"opening:{account_no}", account_no, amount_fen, work_date)
    return account_no
