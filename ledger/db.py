"""The database the ledger and the gateway share, and its transactions.

The ledger never commits on its own: every operation takes an open `Transaction` from
the caller, so that a hold on the payer's account commits together with the gateway's
payment and outbox rows, or not at all.

`connect(url)` opens either SQLite (`sqlite:////abs/path.db`, `sqlite:///:memory:`) or
PostgreSQL (`postgresql://...`, psycopg 3). SQL is written once with `?` placeholders;
the PostgreSQL adapter rewrites them.

SQLite runs in WAL mode with `synchronous=FULL` (a commit survives power loss) and
foreign keys on. A transaction starts with `BEGIN IMMEDIATE`, which takes the write lock
at once, so two writers never both read a balance and then both spend it. One `Database`
is used from one thread at a time; it may be handed from the thread that opened it to a
writer thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Any

# Pages of write-ahead log after which a commit copies the log back (`_apply_pragmas`).
WAL_CHECKPOINT_PAGES = 8000
# How long a writer waits for another process's write lock before giving up.
BUSY_TIMEOUT_MS = 10_000
# Prepared statements kept per connection; the posting path uses about twenty.
STATEMENT_CACHE_SIZE = 512
# Rows one statement of `insert_rows` carries at most: a batch of 500 payments takes
# three statements a table. Fewer when the rows are wide enough for the statement to pass
# the database's bound on parameters (`Transaction.params_max`).
INSERT_ROWS_MAX = 200
# Below this many rows left, `insert_rows` writes them in one statement whatever their
# number (chunk_sizes).
INSERT_TAIL_ROWS = 16

Params = Sequence[Any]

# The key in `Transaction.cache` of the internal accounts' balance changes not yet
# written (ledger.balances): account number -> fen.
DEFERRED_BALANCES = "ledger.deferred_balance_fen"


class Transaction:
    """An open transaction: run SQL, nest savepoints; commit is the caller's `with`."""

    dialect = "sqlite"
    # Parameters one statement may take: SQLite's default bound since 3.32 (a build may
    # set another: `Database` reads its connection's).
    params_max = 32_766

    def __init__(self, cursor: Any) -> None:
        self._cur = cursor
        self._savepoint_depth = 0
        self.open = True
        # Facts read inside this transaction that cannot change until it ends (the
        # write lock is held), such as the last closed work date. Cleared whenever a
        # savepoint rolls back, because the facts may have come from undone writes.
        self.cache: dict[str, Any] = {}
        # Keys of `cache` that a rolled-back savepoint sets back as they were when it
        # began instead of forgetting (`keep_across_rollback`).
        self._kept: set[str] = set()
        self._flushers: list[Callable[[Transaction], None]] = []
        # Checks run as an outermost savepoint (a piece of work of a group commit) ends
        # well: one that raises undoes that piece alone (`at_piece_end`).
        self._piece_checks: list[Callable[[Transaction], None]] = []

    def keep_across_rollback(self, key: str) -> None:
        """Have a rolled-back savepoint give `cache[key]` (a dict) back as it was when
        the savepoint began, instead of clearing it: for what is only in memory until
        the commit writes it (deferred balance changes, numbers taken ahead)."""
        self._kept.add(key)

    def on_flush(self, flusher: Callable[[Transaction], None]) -> None:
        """Have `flusher` write deferred changes before a commit or a savepoint."""
        if flusher not in self._flushers:
            self._flushers.append(flusher)

    def at_piece_end(self, check: Callable[["Transaction"], None]) -> None:
        """Have `check` run as each outermost savepoint ends without error, before it is
        released: if it raises, that savepoint is rolled back and the error propagates
        from it, so a group commit refuses that piece of work alone."""
        if check not in self._piece_checks:
            self._piece_checks.append(check)

    def flush(self) -> None:
        """Write every deferred change now (before reading what it changes)."""
        for flusher in self._flushers:
            flusher(self)

    def _sql(self, sql: str) -> str:
        """The statement in this database's placeholder style (SQLite: as written)."""
        return sql

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; the number of rows it changed."""
        assert self.open, "the transaction has already ended"
        self._cur.execute(self._sql(sql), params)
        return self._cur.rowcount

    def executemany(self, sql: str, rows: Iterable[Params]) -> int:
        """Run one statement for each row; the number of rows they changed together."""
        assert self.open, "the transaction has already ended"
        self._cur.executemany(self._sql(sql), rows)
        return self._cur.rowcount

    def insert_rows(self, head: str, rows: Sequence[Params], tail: str = ""
                    ) -> list[tuple[Any, ...]]:
        """`head` ("INSERT INTO t (a, b) VALUES") for many rows of one width, with up to
        INSERT_ROWS_MAX rows in one multi-row statement; what a RETURNING `tail` gives.

        executemany runs its statement once per row, each run binding and stepping on its
        own and, in SQLite's module, letting go of the interpreter lock and taking it back
        around the step: for a batch of hundreds of payments that is most of the cost of
        writing a narrow row."""
        assert self.open, "the transaction has already ended"
        returned: list[tuple[Any, ...]] = []
        if not rows:
            return returned
        step = max(1, min(INSERT_ROWS_MAX, self.params_max // len(rows[0])))
        start = 0
        for size in chunk_sizes(len(rows), step):
            chunk = rows[start:start + size]
            start += size
            self._cur.execute(self._sql(_insert_sql(head, len(chunk[0]), len(chunk), tail)),
                              list(chain.from_iterable(chunk)))
            if "RETURNING" in tail:
                returned += self._cur.fetchall()
        return returned

    def query(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        assert self.open, "the transaction has already ended"
        self._cur.execute(self._sql(sql), params)
        return self._cur.fetchall()

    def query_one(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        assert self.open, "the transaction has already ended"
        self._cur.execute(self._sql(sql), params)
        return self._cur.fetchone()

    def savepoint(self) -> "_Savepoint":
        """A nested scope: an exception inside undoes only this scope, then propagates.

        Deferred balance changes (ledger.balances) are not written first: they wait for
        the commit, so the few internal accounts every payment touches take one write
        per transaction instead of one per piece of work. A rolled-back scope gets back
        what the kept cache entries (`keep_across_rollback`) held before it, such as the
        deferred changes made before it, and loses what it added to them."""
        return _Savepoint(self)


class _Savepoint:
    """`Transaction.savepoint`. Every piece of work of a group commit runs in one (and
    the ledger's operations in their own): a class with its statements written once costs
    about half of what a generator-based context manager did (8.4 µs a scope on this
    machine against 3.4 for the two bare statements)."""

    __slots__ = ("tx", "before", "depth")

    def __init__(self, tx: Transaction) -> None:
        self.tx = tx

    def __enter__(self) -> Transaction:
        tx = self.tx
        cache = tx.cache
        self.before = {key: dict(cache[key]) for key in tx._kept if cache.get(key)} \
            if cache else None
        tx._savepoint_depth = self.depth = tx._savepoint_depth + 1
        tx._cur.execute(_SAVEPOINT[self.depth] if self.depth < len(_SAVEPOINT)
                        else f"SAVEPOINT sp{self.depth}")
        return tx

    def __exit__(self, kind: Any, exc: Any, trace: Any) -> None:
        tx, depth = self.tx, self.depth
        try:
            if kind is None and depth == 1 and tx._piece_checks:
                try:
                    for check in tx._piece_checks:
                        check(tx)
                except BaseException:
                    self._undo()
                    raise
            if kind is not None:
                self._undo()
            else:
                tx._cur.execute(_RELEASE[depth] if depth < len(_RELEASE)
                                else f"RELEASE SAVEPOINT sp{depth}")
        finally:
            tx._savepoint_depth = depth - 1

    def _undo(self) -> None:
        tx, depth = self.tx, self.depth
        tx._cur.execute(f"ROLLBACK TO SAVEPOINT sp{depth}")
        tx._cur.execute(f"RELEASE SAVEPOINT sp{depth}")
        tx.cache.clear()
        if self.before:
            tx.cache.update(self.before)


_SAVEPOINT = [f"SAVEPOINT sp{depth}" for depth in range(8)]
_RELEASE = [f"RELEASE SAVEPOINT sp{depth}" for depth in range(8)]


def chunk_sizes(count: int, step: int) -> list[int]:
    """The row counts of the statements `insert_rows` writes `count` rows in: `step` as
    long as that many are left, then the rest in powers of two down to a tail of at most
    INSERT_TAIL_ROWS. Each count is a statement text of its own, prepared at its first use
    and kept in the connection's cache; cut this way, a table has at most about twenty
    (not one for every size a batch can leave), so batches of every size share them. A
    statement of 200 rows costs some milliseconds to prepare against under one to run."""
    sizes = [step] * (count // step)
    rest = count - len(sizes) * step
    while rest > INSERT_TAIL_ROWS:
        size = 1 << (rest.bit_length() - 1)
        sizes.append(size)
        rest -= size
    if rest:
        sizes.append(rest)
    return sizes


@lru_cache(maxsize=256)
def _insert_sql(head: str, width: int, count: int, tail: str) -> str:
    """A multi-row INSERT of `count` rows of `width` values each."""
    row = "(" + ", ".join("?" * width) + ")"
    return f"{head} {', '.join([row] * count)}{' ' + tail if tail else ''}"


class Database:
    """One SQLite connection in autocommit mode; transactions are explicit."""

    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn = sqlite3.connect(
            path,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=STATEMENT_CACHE_SIZE,
        )
        self._apply_pragmas()
        self._in_transaction = False
        self._params_max = self._conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)

    def _apply_pragmas(self) -> None:
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        # 16 MiB of page cache (SQLite's default is 2): a group commit of a few hundred
        # payments touches more pages than the default holds. Bounded, so memory stays flat.
        self._conn.execute("PRAGMA cache_size=-16384")
        # Savepoints keep the pages they change in a statement journal, a temporary file
        # by default: the gateway runs each piece of work in a savepoint, and SQLite wrote
        # that file page by page through the kernel (tens of thousands of writes a second
        # under load). The journal only serves a rollback inside the open transaction and
        # is never read after a crash, so memory holds it as well.
        self._conn.execute("PRAGMA temp_store=MEMORY")
        # The write-ahead log is copied back into the database file (a checkpoint) once
        # it holds this many pages instead of SQLite's 1,000: a page every payment
        # rewrites (a hot account's row, the right edge of an index, the sequences) is
        # then copied once per 8,000 pages of log instead of once per 1,000. Measured in
        # turns on `bench e2e`'s HVPS phase: 5 to 15% less gateway CPU per payment. The
        # log grows to about 32 MiB between checkpoints.
        self._conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """BEGIN IMMEDIATE ... COMMIT; ROLLBACK if the block raises."""
        assert not self._in_transaction, "transactions on one Database do not nest"
        cursor = self._conn.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        self._in_transaction = True
        tx = Transaction(cursor)
        tx.params_max = self._params_max
        try:
            yield tx
        except BaseException:
            tx.open = False
            self._conn.rollback()
            raise
        else:
            self._commit(tx, cursor)
        finally:
            self._in_transaction = False
            cursor.close()

    def _commit(self, tx: Transaction, cursor: Any) -> None:
        try:
            tx.flush()
        except BaseException:
            tx.open = False
            self._conn.rollback()
            raise
        tx.open = False
        cursor.execute("COMMIT")

    def backup(self, dest_path: str | Path) -> None:
        """Copy the live database to `dest_path` with SQLite's online backup API."""
        assert not self._in_transaction, "back up between transactions"
        target = sqlite3.connect(str(dest_path))
        try:
            self._conn.backup(target)
        finally:
            target.close()

    def close(self) -> None:
        assert not self._in_transaction, "close the transaction before the database"
        self._conn.close()


# The database URLs `connect` opens, and how a refusal of another names them.
URL_SCHEMES = ("sqlite:///", "postgresql://", "postgres://")
URL_EXPECTED = "sqlite:///PATH (sqlite:////abs/path.db) or postgresql://..."


def connect(url: str) -> Any:
    """Open the database named by `url`: sqlite:///... or postgresql://..."""
    if url.startswith("sqlite:///"):
        return Database(sqlite_path(url))
    if url.startswith(("postgresql://", "postgres://")):
        from ledger.db_postgres import PostgresDatabase

        return PostgresDatabase(url)
    raise ValueError(f"unsupported database url {url!r}: use {URL_EXPECTED}")


def sqlite_path(url: str) -> str:
    # sqlite:////abs/path.db names /abs/path.db; sqlite:///rel.db a relative path.
    rest = url[len("sqlite:///"):]
    if rest == ":memory:":
        return rest
    assert rest, "a sqlite url names a file"
    return rest
