"""A pytest fixture that runs a ledger test on SQLite and, when reachable, PostgreSQL.

Set PAYGATE_TEST_POSTGRES_URL to use another server than the default
postgresql://postgres@127.0.0.1:5432/test. Each test gets a schema of its own, dropped
afterwards; when the server cannot be reached the PostgreSQL half is skipped with the
reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from urllib.parse import quote

import pytest

POSTGRES_URL = os.environ.get("PAYGATE_TEST_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/test")


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
    with postgres_schema() as url:
        yield url


@contextmanager
def postgres_schema_or_skip(prefix: str) -> Iterator[str]:
    """`postgres_schema`, or the test skipped with the reason the server cannot be used."""
    reason = postgres_unreachable()
    if reason:
        pytest.skip(f"PostgreSQL tests skipped: {reason}")
    with postgres_schema(prefix) as url:
        yield url


@contextmanager
def postgres_schema(prefix: str = "ledger_test") -> Iterator[str]:
    """A URL whose connections work in a new, empty schema, dropped on leaving."""
    import psycopg

    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            separator = "&" if "?" in POSTGRES_URL else "?"
            yield f"{POSTGRES_URL}{separator}options={quote(f'-csearch_path={schema}')}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
