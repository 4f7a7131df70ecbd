"""A pytest fixture that runs a ledger test on SQLite and, when reachable, PostgreSQL.

Set PAYGATE_TEST_POSTGRES_URL to use another server than the default
postgresql://postgres@127.0.0.1:5432/test. Each test gets a schema of its own, dropped
afterwards; when the server cannot be reached the PostgreSQL half is skipped with the
reason.
"""

from __future__ import annotations

import os
import threading
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
            yield schema_url(schema)
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def schema_url(schema: str) -> str:
    """The URL of POSTGRES_URL's server whose connections work in `schema`."""
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}options={quote(f'-csearch_path={schema}')}"


# How long dropping a schema waits for the locks of a connection still in it (a gateway
# left running with its transaction open) before it fails, naming the schema.
DROP_LOCK_WAIT = "30s"


class SchemaPerFolder:
    """One PostgreSQL schema for each gateway data folder, as SQLite keeps one file in
    each: a gateway started again on its folder finds its database, two gateways on two
    folders do not share one. A schema is made when a folder's URL is first asked for and
    dropped when the scope open then ends (`scope`: a test, a module, the session), so a
    module's gateway keeps its database across the module's tests. One connection makes
    and drops them all; `url_for` may be called from any thread."""

    def __init__(self, prefix: str = "gateway_test") -> None:
        import psycopg

        self.prefix = prefix
        self._admin = psycopg.connect(POSTGRES_URL, autocommit=True)
        self._admin.execute(f"SET lock_timeout = '{DROP_LOCK_WAIT}'")
        self._urls: dict[Path, str] = {}
        self._scopes: list[list[tuple[Path | None, str]]] = []
        self._lock = threading.Lock()

    def url_for(self, folder: Path) -> str:
        """The URL of `folder`'s schema, made now if it has none."""
        with self._lock:
            if folder not in self._urls:
                self._urls[folder] = self._made(folder)
            return self._urls[folder]

    def new_url(self) -> str:
        """The URL of a new schema of no folder, dropped with the innermost scope (for
        gateway processes a test starts, which read it from PAYGATE_DATABASE_URL)."""
        with self._lock:
            return self._made(None)

    def _made(self, folder: Path | None) -> str:
        assert self._scopes, "a schema is made inside a scope"
        schema = f"{self.prefix}_{uuid.uuid4().hex[:12]}"
        self._admin.execute(f"CREATE SCHEMA {schema}")
        self._scopes[-1].append((folder, schema))
        return schema_url(schema)

    @contextmanager
    def scope(self) -> Iterator[None]:
        """The schemas made inside are dropped on leaving."""
        made: list[tuple[Path | None, str]] = []
        with self._lock:
            self._scopes.append(made)
        try:
            yield
        finally:
            with self._lock:
                assert self._scopes[-1] is made, "scopes end in the order they began"
                self._scopes.pop()
                for folder, _ in made:
                    if folder is not None:
                        del self._urls[folder]
                kept = [schema for _, schema in reversed(made) if not self._dropped(schema)]
            assert not kept, (
                f"schemas {', '.join(kept)} not dropped: a connection still held their "
                f"tables after {DROP_LOCK_WAIT} (a gateway left running in a transaction?)")

    def _dropped(self, schema: str) -> bool:
        import psycopg

        try:
            self._admin.execute(f"DROP SCHEMA {schema} CASCADE")
        except psycopg.errors.LockNotAvailable:
            return False
        return True

    def close(self) -> None:
        self._admin.close()
