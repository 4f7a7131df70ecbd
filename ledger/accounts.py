"""Installing the books and the life of an account: open, frozen, closed.

A freeze placed by a competent authority lasts six months and then lapses by itself
unless renewed (DOMAIN.md §4). The account row keeps status "frozen" with the last
frozen day in `frozen_until`; from the day after, postings treat it as open, so no
batch job has to lift freezes on time.
"""

from __future__ import annotations

import calendar
import logging
from datetime import date

from gateway import dialect
from ledger import numbers
from ledger.chart import CUSTOMER_SUBJECTS, SUBJECTS, SUBJECTS_BY_CODE
from ledger.db import Transaction
from ledger.errors import LedgerError
from ledger.holds import open_hold_count, open_holds
from ledger.postings import work_date_text
from ledger.schema import ADDED_COLUMNS, SCHEMA_VERSION, UPGRADES_FROM, statements
from ledger.settings import Context
from ledger.types import Account, CustomerBalance

FREEZE_MONTHS = 6

log = logging.getLogger("paygate.ledger")

_INSERT_ACCOUNT = (
    "INSERT INTO ledger_account (account_no, subject, name, role, normal_side, negative_ok,"
    " status, balance_fen, opened_on) VALUES (?, ?, ?, ?, ?, ?, 'open', 0, ?)"
    " ON CONFLICT (account_no) DO NOTHING"
)


def install(ctx: Context, tx: Transaction) -> None:
    """Create the tables, the chart of accounts and our internal accounts; idempotent."""
    for statement in statements(tx.dialect):
        tx.execute(statement)
    tx.execute("INSERT INTO ledger_meta (key, value) VALUES ('schema_version', ?)"
               " ON CONFLICT (key) DO NOTHING", (SCHEMA_VERSION,))
    row = tx.query_one("SELECT value FROM ledger_meta WHERE key = 'schema_version'")
    version = row[0] if row else None
    if version in UPGRADES_FROM:
        _upgrade(tx, version)
    elif version != SCHEMA_VERSION:
        raise LedgerError("ledger_schema_version_differs", version,
                          f"schema version {SCHEMA_VERSION}; restore or rebuild the database")
    for subject in SUBJECTS:
        tx.execute(
            "INSERT INTO ledger_subject (code, name_zh, name_en, class, normal_side,"
            " on_balance, negative_ok) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (code) DO NOTHING",
            (subject.code, subject.name_zh, subject.name_en, subject.klass,
             subject.normal_side, int(subject.on_balance), int(subject.negative_ok)),
        )
    for code, account_no in ctx.accounts.by_subject.items():
        subject = SUBJECTS_BY_CODE[code]
        tx.execute(_INSERT_ACCOUNT, (account_no, code, subject.name_zh, "internal",
                                     subject.normal_side, int(subject.negative_ok),
                                     "1970-01-01"))


def _upgrade(tx: Transaction, version: str) -> None:
    """Bring books of an older schema version to this one in place: the new tables were
    made by the CREATE statements; the columns added since are added here."""
    for table, columns in ADDED_COLUMNS.items():
        added = dialect.add_columns(tx, table, columns)
        log.info("event=ledger_columns_added table=%s columns=%s", table, ",".join(added))
    tx.execute("UPDATE ledger_meta SET value = ? WHERE key = 'schema_version'",
               (SCHEMA_VERSION,))
    log.info("event=ledger_schema_upgraded from=%s to=%s", version, SCHEMA_VERSION)


def open_customer_account(ctx: Context, tx: Transaction, account_no: str, name: str,
                          kind: str, work_date: date | str | None) -> None:
    """Open a deposit account; opening the same account again with the same details
    is a no-op, with other details a refusal."""
    if work_date is None:
        raise LedgerError("work_date_invalid", None, "a date, YYYY-MM-DD", "work_date")
    opened_on = work_date_text(work_date)
    _check_new_account(ctx, account_no, name, kind)
    subject = SUBJECTS_BY_CODE[CUSTOMER_SUBJECTS[kind]]

    existing = tx.query_one("SELECT subject, name FROM ledger_account WHERE account_no = ?",
                            (account_no,))
    if existing is not None:
        if existing != (subject.code, name):
            raise LedgerError("account_already_exists", account_no,
                              "a new account number", "account_no")
        return
    tx.execute(_INSERT_ACCOUNT, (account_no, subject.code, name, "customer",
                                 subject.normal_side, int(subject.negative_ok), opened_on))


def _check_new_account(ctx: Context, account_no: object, name: object, kind: str) -> None:
    if kind not in CUSTOMER_SUBJECTS:
        raise LedgerError("account_kind_invalid", kind, "personal or corporate", "kind")
    if not isinstance(name, str) or not name.strip():
        raise LedgerError("account_name_missing", name, "the holder's name", "name")
    if not isinstance(account_no, str):
        raise LedgerError("account_number_invalid", account_no, "a string", "account_no")
    if ctx.settings.strict_numbers:
        if not numbers.validate_customer_account(account_no):
            raise LedgerError("account_number_invalid", account_no,
                              "23 ASCII digits with our Luhn check digits", "account_no")
        if numbers.customer_kind_of(account_no) != kind:
            raise LedgerError("account_kind_mismatch", kind,
                              f"{numbers.customer_kind_of(account_no)}, as the number says",
                              "kind")
    elif not account_no or len(account_no) > 34:
        raise LedgerError("account_number_invalid", account_no, "1 to 34 characters",
                          "account_no")


def get_account(tx: Transaction, account_no: str, as_of: date | str | None = None) -> Account:
    """An account and its effective status on `as_of` (a lapsed freeze shows as open)."""
    tx.flush()
    row = tx.query_one(
        "SELECT account_no, subject, name, role, status, frozen_until, balance_fen, opened_on"
        " FROM ledger_account WHERE account_no = ?",
        (account_no,),
    )
    if row is None:
        raise LedgerError("account_not_found", account_no, "an account of ours", "account_no")
    status, frozen_until = row[4], row[5]
    if status == "frozen" and as_of is not None and frozen_until < work_date_text(as_of):
        status, frozen_until = "open", None
    return Account(row[0], row[1], row[2], row[3], status, frozen_until, int(row[6]), row[7])


def customer_balance(tx: Transaction, account_no: str, as_of: date | str) -> CustomerBalance:
    """A customer account's balance, the money it holds for payments under way and what
    is available, on `as_of` (a freeze lapsed by then no longer counts); an account that
    is no customer's is refused as not found."""
    account = _customer_account(tx, account_no, as_of)
    holds, held_fen = open_holds(tx, account_no)
    return CustomerBalance(account, held_fen, holds)


def freeze(tx: Transaction, account_no: str, work_date: date | str,
           until: date | str | None = None) -> str:
    """Freeze a customer account (renewing extends it); the last frozen day."""
    start = date.fromisoformat(work_date_text(work_date))
    last_day = work_date_text(until) if until is not None else _freeze_end(start).isoformat()
    account = _customer_account(tx, account_no, start)
    if account.status == "closed":
        raise LedgerError("account_closed", account_no, "an open account", "account_no")
    if last_day < start.isoformat():
        raise LedgerError("freeze_end_before_start", last_day,
                          f"a date on or after {start}", "until")
    tx.execute("UPDATE ledger_account SET status = 'frozen', frozen_until = ?"
               " WHERE account_no = ?", (last_day, account_no))
    return last_day


def unfreeze(tx: Transaction, account_no: str, work_date: date | str) -> None:
    account = _customer_account(tx, account_no, work_date)
    if account.status != "frozen":
        raise LedgerError("account_not_frozen", account_no, "a frozen account", "account_no")
    tx.execute("UPDATE ledger_account SET status = 'open', frozen_until = NULL"
               " WHERE account_no = ?", (account_no,))


def close_account(tx: Transaction, account_no: str, work_date: date | str) -> None:
    """Close an account with a zero balance and no funds on hold."""
    account = _customer_account(tx, account_no, work_date)
    if account.status == "closed":
        raise LedgerError("account_closed", account_no, "an open account", "account_no")
    if account.status == "frozen":
        raise LedgerError("account_frozen", account_no, "an account not frozen", "account_no")
    if account.balance_fen != 0:
        raise LedgerError("account_balance_not_zero", account.balance_fen, "0", "balance_fen")
    held = open_hold_count(tx, account_no)
    if held:
        raise LedgerError("account_has_open_holds", held, "no funds on hold", "account_no")
    tx.execute("UPDATE ledger_account SET status = 'closed', closed_on = ?"
               " WHERE account_no = ?", (work_date_text(work_date), account_no))


def _customer_account(tx: Transaction, account_no: str, as_of: date | str) -> Account:
    account = get_account(tx, account_no, as_of)
    if account.role != "customer":
        raise LedgerError("account_not_found", account_no, "a customer account", "account_no")
    return account


def _freeze_end(start: date) -> date:
    """The last frozen day: the day before the same date six months on (month-end clamped)."""
    month_index = start.month - 1 + FREEZE_MONTHS
    year, month = start.year + month_index // 12, month_index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return date.fromordinal(date(year, month, day).toordinal() - 1)
