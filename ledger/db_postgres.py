"""The PostgreSQL adapter (psycopg 3), with the same interface as the SQLite one.

Statements are written once with `?` placeholders and rewritten to psycopg's `%s` here
(none of the ledger's SQL has a `?` or `%` inside a string literal). Transactions run
at READ COMMITTED: the ledger's balance checks are single conditional UPDATEs, which
lock the account row, and its event ids are unique, so two writers can neither spend
the same money nor post the same event twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.numeric import NumericLoader

from ledger.db import Params, Transaction
from ledger.postings import check_posted_dates_still_open

# Seconds to wait for the server when connecting.
CONNECT_TIMEOUT_S = 5


class _WholeNumberLoader(NumericLoader):
    """SUM over BIGINT columns is NUMERIC in PostgreSQL; a whole number comes back as an
    int, as SQLite gives it, so that sums of fen stay integers (never Decimal)."""

    def load(self, data: Any) -> Any:
        value = super().load(data)
        return int(value) if value.is_finite() and value == value.to_integral_value() \
            else value


class PostgresTransaction(Transaction):
    dialect = "postgresql"
    params_max = 65_535  # the protocol's bound on a statement's parameters

    def __init__(self, cursor: Any, converted: dict[str, str],
                 side: Callable[[], Any] | None = None) -> None:
        super().__init__(cursor)
        self._converted = converted
        self._side = side

    def committed_at_once(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        """Run one statement outside this transaction, on the database's second
        connection, committed at once (a counter other processes must not wait for
        until this transaction ends); its first row."""
        assert self._side is not None, "this transaction's database has no second connection"
        with self._side().cursor() as cursor:
            cursor.execute(self._sql(sql), params)
            return cursor.fetchone()

    def _sql(self, sql: str) -> str:
        text = self._converted.get(sql)
        if text is None:
            text = sql.replace("%", "%%").replace("?", "%s")
            self._converted[sql] = text
        return text


def _commit(tx: PostgresTransaction, cursor: Any) -> None:
    try:
        tx.flush()
        check_posted_dates_still_open(tx)
    except BaseException:
        tx.open = False
        cursor.execute("ROLLBACK")
        raise
    tx.open = False
    cursor.execute("COMMIT")


class PostgresDatabase:
    """One psycopg connection in autocommit mode; transactions are explicit."""

    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        self._conn.adapters.register_loader("numeric", _WholeNumberLoader)
        self._in_transaction = False
        # Statements rewritten to psycopg's placeholders, kept for the connection's life.
        self._converted: dict[str, str] = {}
        self._side_conn: Any = None

    @contextmanager
    def transaction(self) -> Iterator[PostgresTransaction]:
        """BEGIN ... COMMIT; ROLLBACK if the block raises."""
        assert not self._in_transaction, "transactions on one Database do not nest"
        cursor = self._conn.cursor()
        cursor.execute("BEGIN")
        self._in_transaction = True
        tx = PostgresTransaction(cursor, self._converted, self._side)
        try:
            yield tx
        except BaseException:
            tx.open = False
            cursor.execute("ROLLBACK")
            raise
        else:
            _commit(tx, cursor)
        finally:
            self._in_transaction = False
            cursor.close()

    def backup(self, dest_path: str | Path) -> None:
        raise NotImplementedError(
            "PostgreSQL is backed up with pg_dump or continuous archiving, see docs/ledger.md"
        )

    def _side(self) -> Any:
        """The second connection (autocommit), opened when first needed."""
        if self._side_conn is None:
            self._side_conn = psycopg.connect(self.url, autocommit=True,
                                              connect_timeout=CONNECT_TIMEOUT_S)
        return self._side_conn

    def close(self) -> None:
        assert not self._in_transaction, "close the transaction before the database"
        if self._side_conn is not None:
            self._side_conn.close()
        self._conn.close()
