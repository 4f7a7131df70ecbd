"""The PostgreSQL adapter (psycopg 3), with the same interface as the SQLite one.

Statements are written once with `?` placeholders and rewritten to psycopg's `%s` here
(none of the ledger's SQL has a `?` or `%` inside a string literal). Transactions run
at READ COMMITTED: the ledger's balance checks are single conditional UPDATEs, which
lock the account row, and its event ids are unique, so two writers can neither spend
the same money nor post the same event twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from ledger.db import Transaction

# Seconds to wait for the server when connecting.
CONNECT_TIMEOUT_S = 5


class PostgresTransaction(Transaction):
    dialect = "postgresql"

    def __init__(self, cursor: Any, converted: dict[str, str]) -> None:
        super().__init__(cursor)
        self._converted = converted

    def _sql(self, sql: str) -> str:
        text = self._converted.get(sql)
        if text is None:
            text = sql.replace("%", "%%").replace("?", "%s")
            self._converted[sql] = text
        return text


def _commit(tx: PostgresTransaction, cursor: Any) -> None:
    try:
        tx.flush()
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
        self._in_transaction = False
        # Statements rewritten to psycopg's placeholders, kept for the connection's life.
        self._converted: dict[str, str] = {}

    @contextmanager
    def transaction(self) -> Iterator[PostgresTransaction]:
        """BEGIN ... COMMIT; ROLLBACK if the block raises."""
        assert not self._in_transaction, "transactions on one Database do not nest"
        cursor = self._conn.cursor()
        cursor.execute("BEGIN")
        self._in_transaction = True
        tx = PostgresTransaction(cursor, self._converted)
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

    def close(self) -> None:
        assert not self._in_transaction, "close the transaction before the database"
        self._conn.close()
