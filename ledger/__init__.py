"""The built-in double-entry ledger in integer fen (see docs/ledger.md).

    from ledger import connect, Ledger, LedgerError, CreditResult

    db = connect("sqlite:////abs/path/gateway.db")
    led = Ledger()
    with db.transaction() as tx:
        led.install(tx)
        hold_id = led.hold(tx, "pay-1:hold", account_no, 150_000, work_date, "pay-1")
"""

from ledger.db import Database, Transaction, connect
from ledger.errors import LedgerError
from ledger.service import Ledger
from ledger.settings import LedgerSettings
from ledger.types import (Account, CreditResult, ReceivableItem, Statement, SuspenseItem,
                          TrialBalance)

__all__ = [
    "Account", "CreditResult", "Database", "Ledger", "LedgerError", "LedgerSettings",
    "ReceivableItem", "Statement", "SuspenseItem", "Transaction", "TrialBalance", "connect",
]
