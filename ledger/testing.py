"""Helpers for tests and the demo: valid account numbers, ready-made books, and a
pytest fixture that runs a test on SQLite and, when reachable, on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import date
from functools import cache
from pathlib import Path
from urllib.parse import quote

import pytest

from ledger.db import Database, connect
from ledger.numbers import make_customer, make_customer_account
from ledger.service import Ledger

# The work date tests use: a Monday that is a statutory working day.
WORK_DATE = date(2026, 12, 7)
# The PostgreSQL server tests use when it is reachable.
POSTGRES_URL = os.environ.get("PAYGATE_TEST_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/test")
_CURRENT_ACCOUNT_TYPE = {"personal": "101", "corporate": "103"}


def customer_account(sequence: int, kind: str = "personal") -> str:
    """The current account number of customer `sequence`, with valid check digits."""
    customer_no = make_customer(kind, sequence)
    return make_customer_account(customer_no, _CURRENT_ACCOUNT_TYPE[kind], 1)


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


@cache
def postgres_unreachable(url: str = POSTGRES_URL) -> str:
    """Why PostgreSQL at `url` cannot be used, or "" when it can."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]')"
    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.Error as error:
        return f"cannot connect to {url}: {str(error).strip().splitlines()[0]}"
    return ""


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL for an empty database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    reason = postgres_unreachable()
    if reason:
        pytest.skip(f"PostgreSQL tests skipped: {reason}")
    yield from _postgres_schema()


def _postgres_schema() -> Iterator[str]:
    import psycopg

    schema = f"ledger_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            separator = "&" if "?" in POSTGRES_URL else "?"
            yield f"{POSTGRES_URL}{separator}options={quote(f'-csearch_path={schema}')}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
