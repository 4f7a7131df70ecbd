"""The gateway's database: payments, outbox, inbox, archive, idempotency keys.

The ledger's tables live in the same database, so the hold on the payer's account
commits in the same transaction as the payment and its outbox row (ARCHITECTURE.md,
decision 1). All database work runs on one thread. Work submitted while a transaction is
being committed waits and goes into the next one together (group commit): one fsync
covers many payments, and each piece of work runs in its own savepoint so that one
refusal does not undo the others.

On PostgreSQL several gateway processes share the database (README, "Scale out").
Transactions run at READ COMMITTED; every claim of shared work is a conditional UPDATE
and every state change checks the state it read (`Contended` when another process
changed it first). A piece of work that loses such a race (`Contended`, a deadlock, a
unique key another process took first) is rolled back to its savepoint and run again
in the next transaction, where it reads what the other process committed; a whole
transaction that loses one at commit is run again as a whole. Neither happens on
SQLite, where one process writes at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Awaitable, Callable

import ledger
from gateway import critical, deployment, dialect, logs, status_hold, workstate
from gateway.errors import PaygateError

log = logging.getLogger("paygate.store")

BATCH_MAX = 512  # pieces of work in one transaction; bounds a commit's latency
CLOSE_WAIT_S = 10.0  # how long a stop waits for work in flight to commit
# Times a piece of work (or a whole transaction) that lost a race with another process is
# run again before its error is given to the caller. Each run reads what the winner
# committed, so a second loss needs a third process or a new change in between.
RERUNS_MAX = 5
# On PostgreSQL, how long a piece of work waits for a row another process's transaction
# holds before it gives up and runs again in the next transaction. A group of work holds
# every row it touched until it commits; two groups touching the same rows in another
# order would otherwise wait for each other until the server's deadlock check (a second).
LOCK_WAIT_MS = 200
# pg_advisory_xact_lock key of the schema's installation (one per schema).
SCHEMA_LOCK = f"{0x7062}, hashtext(current_schema())"

# PostgreSQL's codes for losing a race: serialization failure, deadlock, unique key
# taken, lock not available. (SQLite errors carry no SQLSTATE.)
_LOST_RACE_STATES = frozenset({"40001", "40P01", "23505", "55P03"})


class Contended(Exception):
    """The row this work read was changed by another process before it could change it;
    the store runs the work again in its next transaction."""


def lost_race(exc: BaseException) -> bool:
    """Whether `exc` means another process got there first (run the work again)."""
    return isinstance(exc, Contended) or \
        getattr(exc, "sqlstate", None) in _LOST_RACE_STATES

# Stream entries, log lines, gathered rows and undos of in-memory changes that the work
# in progress keeps until its transaction commits (gateway.workstate).
_local = workstate._local
log_after_commit = workstate.log_after_commit
on_undo = workstate.on_undo


def after_commit(tx: Any, stream: str, fields: dict[str, str]) -> None:
    """Add a stream entry after the current transaction commits (and only if it does)."""
    entries = getattr(_local, "entries", None)
    assert entries is not None, "after_commit is only for work run by Store.run"
    entries.append((stream, fields))


def gather(tx: Any, key: str, items: list[Any], write: Callable[[Any, list[Any]], None]
           ) -> None:
    """Add `items` to what the current piece of work gathers under `key`, for
    `write(tx, all of them)` to put in the database at once, in the same transaction:
    once every piece of work of the transaction has run, with what the others that
    succeeded gathered under the same key (a piece of work undone, or undone in part by
    `scope`, takes what it gathered with it). Rows that each step of a work, or each work
    of a group commit, would write on its own (a status change's webhook row for each
    payment of a package netted one by one, or for each of forty HVPS payments settled in
    one commit) are so written as a few. Outside work run by Store.run they are written
    now."""
    gathered = getattr(_local, "gathered", None)
    if gathered is None:
        write(tx, items)
        return
    gathered.setdefault(key, (write, []))[1].extend(items)


def _write_gathered(tx: Any, gathered: dict[str, tuple[Callable[[Any, list[Any]], None],
                                                       list[Any]]]) -> None:
    for write, items in gathered.values():
        if items:
            write(tx, items)


# What `answered` gives for an id that `reading_once` did not read (or outside it).
NOT_READ = object()
# Ids one statement of a read made once for many targets names: their callers' lists are
# bounded (the console's lists of at most 200 rows), and each statement stays far below
# both databases' parameter limits.
READ_ONCE_IDS_MAX = 500


@contextmanager
def reading_once(tx: Any, key: str, rows: dict[Any, Any]) -> Iterator[dict[Any, Any]]:
    """Within the block, `answered(tx, key, id)` gives the row `rows` holds for `id`
    (read once, for many ids, before the block; None for one read and not found)
    instead of the database being asked again: for checks that only read, and read the
    same rows many times, run over many targets at once (the console's row actions,
    gateway.ops.control.add_row_actions). Nothing in the block may change those rows."""
    assert key not in tx.cache, f"{key} is read once at a time"
    tx.cache[key] = rows
    try:
        yield rows
    finally:
        tx.cache.pop(key, None)


def answered(tx: Any, key: str, row_id: Any) -> Any:
    """The row `reading_once` holds for `row_id` under `key`; NOT_READ when none does."""
    rows = tx.cache.get(key)
    return NOT_READ if rows is None else rows.get(row_id, NOT_READ)


def id_chunks(ids: list[Any]) -> Iterator[list[Any]]:
    """`ids` in lists of at most READ_ONCE_IDS_MAX, for `IN (...)` of one statement each."""
    for start in range(0, len(ids), READ_ONCE_IDS_MAX):
        yield ids[start:start + READ_ONCE_IDS_MAX]


def rows_by_id(tx: Any, ids: Iterable[Any], sql: str) -> dict[Any, tuple | None]:
    """Each of `ids` with the row `sql` gives for it, a chunk of ids (`id_chunks`) a
    statement: `sql` selects the id first, then the row, and names the chunk's ids as
    `{ids}` (`... IN ({ids})`); of several rows for one id, the last counts (order them);
    None for an id it gives none."""
    rows: dict[Any, tuple | None] = dict.fromkeys(ids)
    for chunk in id_chunks(list(rows)):
        for row_id, *row in tx.query(sql.format(ids=", ".join("?" * len(chunk))), chunk):
            rows[row_id] = tuple(row)
    return rows


class scope:
    """A savepoint inside a piece of work that also forgets the `after_commit` entries,
    the log lines and the gathered items made inside it when it is undone, and sets
    back the in-memory changes made inside it (`on_undo`): a part of the work may fail
    alone (`with scope(tx):`). A class rather than a generator-based
    context manager, as `Transaction.savepoint` is: each envelope of a link POST and
    each incoming message's processing takes one."""

    __slots__ = ("tx", "savepoint", "entries", "lines", "gathered", "marks")

    def __init__(self, tx: Any) -> None:
        self.tx = tx

    def __enter__(self) -> Any:
        entries = getattr(_local, "entries", None)
        assert entries is not None, "scope is only for work run by Store.run"
        self.entries, self.lines, gathered = entries, _local.lines, _local.gathered
        self.gathered = gathered
        self.marks = (len(entries), len(self.lines),
                      {key: len(items) for key, (_, items) in gathered.items()}
                      if gathered else None, len(_local.undo))
        self.savepoint = self.tx.savepoint()
        return self.savepoint.__enter__()

    def __exit__(self, kind: Any, exc: Any, trace: Any) -> None:
        try:
            self.savepoint.__exit__(kind, exc, trace)
        except BaseException:
            self._forget()
            raise
        if kind is not None:
            self._forget()

    def _forget(self) -> None:
        mark, lines_mark, gathered_marks, undo_mark = self.marks
        workstate.run_undo(_local.undo, undo_mark)
        del self.entries[mark:]
        del self.lines[lines_mark:]
        for key, (_, items) in self.gathered.items():
            del items[(gathered_marks or {}).get(key, 0):]


SCHEMA = [
    """CREATE TABLE IF NOT EXISTS payments (
        id TEXT PRIMARY KEY,
        direction TEXT NOT NULL,          -- out | in
        channel TEXT NOT NULL,            -- hvps | beps | internal
        state TEXT NOT NULL,
        msg_type TEXT NOT NULL,
        msg_id TEXT NOT NULL,             -- XML MsgId of the message carrying it
        tx_id TEXT NOT NULL,
        end_to_end_id TEXT NOT NULL,
        sender_direct TEXT NOT NULL,
        receiver_direct TEXT NOT NULL,
        amount_fen INTEGER NOT NULL CHECK (amount_fen > 0),
        currency TEXT NOT NULL,
        payer_account TEXT NOT NULL, payer_name TEXT NOT NULL, payer_bank TEXT NOT NULL,
        payee_account TEXT NOT NULL, payee_name TEXT NOT NULL, payee_bank TEXT NOT NULL,
        business_type TEXT NOT NULL, business_kind TEXT NOT NULL,
        urgency TEXT NOT NULL, priority INTEGER NOT NULL,
        remittance TEXT NOT NULL DEFAULT '[]',
        hold_id TEXT, pending_no TEXT, reason TEXT, settled_on TEXT,
        client TEXT,                      -- the core-system client that submitted it
        route TEXT NOT NULL DEFAULT '{}', -- its JSON, or "#" and the hash of a route_records row
        work_date TEXT NOT NULL,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        UNIQUE (direction, sender_direct, msg_type, msg_id)
    )""",
    # Newest first, in all states or in one: the key GET /v1/transfers pages by and the
    # console's latest payments, read without sorting the table. The second replaces an
    # index on state alone, of which it is an extension.
    "CREATE INDEX IF NOT EXISTS payments_created ON payments (created_at, id)",
    "CREATE INDEX IF NOT EXISTS payments_state_created ON payments (state, created_at, id)",
    "DROP INDEX IF EXISTS payments_state",
    "CREATE INDEX IF NOT EXISTS payments_work_date ON payments (work_date)",
    "CREATE INDEX IF NOT EXISTS payments_msg_id ON payments (msg_id)",
    # EndToEndIds of outgoing HVPS payments, looked up for ready hvps.111s (gateway.app)
    "CREATE INDEX IF NOT EXISTS payments_hvps_out_e2e ON payments (end_to_end_id) "
    "WHERE direction = 'out' AND channel = 'hvps'",
    # A route record is shared by every payment of its class (routing.Router.decide): it
    # is stored once and payments name it by hash, instead of a kilobyte in each row.
    """CREATE TABLE IF NOT EXISTS route_records (
        hash TEXT PRIMARY KEY, record TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS payment_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        payment_id TEXT NOT NULL, at TEXT NOT NULL, state TEXT NOT NULL,
        event TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '{}'
    )""",
    "CREATE INDEX IF NOT EXISTS payment_events_payment ON payment_events (payment_id)",
    # The newest time an event was recorded, read at start (gateway.dayend): not the
    # last row's, since rows a payment leaving its group is given (payments.leave_group)
    # come last with the older times of what they copy.
    "CREATE INDEX IF NOT EXISTS payment_events_at ON payment_events (at)",
    # Which webhook row tells of which status change of a payment: one row may carry the
    # changes of many payments (gateway.webhook), so "was the core system told that this
    # payment settled" is answered here, and the state of the outbox row says whether the
    # telling is done.
    """CREATE TABLE IF NOT EXISTS webhook_events (
        outbox_id INTEGER NOT NULL, payment_id TEXT NOT NULL, state TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS webhook_events_payment ON webhook_events (payment_id)",
    # `request`: the first body of a debit or periodic credit (gateway.key_reuse); a
    # transfer's first request is read back from its payment.
    """CREATE TABLE IF NOT EXISTS idempotency (
        client TEXT NOT NULL, key TEXT NOT NULL, body_sha256 TEXT NOT NULL,
        status INTEGER NOT NULL, response TEXT NOT NULL, created_at TEXT NOT NULL,
        request TEXT, kind TEXT,
        PRIMARY KEY (client, key)
    )""",
    # A ready hvps.111 first taken under its key, field by field (gateway.ready)
    """CREATE TABLE IF NOT EXISTS ready_messages (
        client TEXT NOT NULL, key TEXT NOT NULL, fields TEXT NOT NULL,
        PRIMARY KEY (client, key)
    )""",
    # A MsgId is the participant's whatever client sends it: looked up by key alone
    "CREATE INDEX IF NOT EXISTS ready_messages_key ON ready_messages (key)",
    # ... and taken by one client: one row per key, written with the message's payment
    # (gateway.ready), so that two clients sending one MsgId to two gateway processes at
    # once do not both pass. Keys two clients took before this table existed stay as
    # they were (each client's message answered as it was); the table is filled once,
    # when it is still empty, with one of their clients, and a third client is refused.
    """CREATE TABLE IF NOT EXISTS ready_message_ids (
        key TEXT PRIMARY KEY, client TEXT NOT NULL
    )""",
    "INSERT INTO ready_message_ids (key, client) SELECT key, MIN(client) FROM ready_messages "
    "WHERE NOT EXISTS (SELECT 1 FROM ready_message_ids) GROUP BY key",
    # The payment of a ready hvps.111: the core system's own MsgId and TxId, shown beside
    # the ones the gateway sent, and what the message said that the payment's row does
    # not keep and its hvps.111 carries on (agents' names, addresses, charge bearer: a
    # JSON object) (gateway.ready)
    """CREATE TABLE IF NOT EXISTS ready_payments (
        payment_id TEXT PRIMARY KEY, msg_id TEXT NOT NULL, tx_id TEXT NOT NULL,
        carried TEXT NOT NULL
    )""",
    # The payment carrying a ready message's EndToEndId (gateway.ready)
    """CREATE TABLE IF NOT EXISTS end_to_end_claims (
        end_to_end_id TEXT PRIMARY KEY, payment_id TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        payment_id TEXT,                  -- null for messages about no one payment
        kind TEXT NOT NULL,               -- hvps_credit | message
        stream TEXT NOT NULL,
        state TEXT NOT NULL,              -- waiting | pending | sending | sent | acked | done
        mesg_type TEXT, mesg_id TEXT, receiver TEXT,
        envelope BLOB,                    -- webhook rows: the body; a message's bytes are in
                                          -- the archive (outbound.stored_bytes)
        attempts INTEGER NOT NULL DEFAULT 0,
        -- attempts the NPC provably did not take (no connection, 503, a 4xx refusal, or
        -- held while the link was down); equal to `attempts` while it never had the
        -- message (gateway.outbound.Delivery)
        untaken INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        claimed_by INTEGER                -- PostgreSQL: the session sending it (a backend pid)
    )""",
    "CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state)",
    # Rows are looked up by a message id or a payment id, never by their absence: webhook
    # rows carry no message id and ccms.990s no payment, and each index left out of an
    # insert is a page less in the commit. (They replace indexes of every row.)
    "CREATE INDEX IF NOT EXISTS outbox_mesg_id ON outbox (mesg_id) WHERE mesg_id IS NOT NULL",
    "DROP INDEX IF EXISTS outbox_mesg",
    "CREATE INDEX IF NOT EXISTS outbox_payment_id ON outbox (payment_id) "
    "WHERE payment_id IS NOT NULL",
    "DROP INDEX IF EXISTS outbox_payment",
    """CREATE TABLE IF NOT EXISTS inbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        sender TEXT NOT NULL, mesg_type TEXT NOT NULL, mesg_id TEXT NOT NULL,
        state TEXT NOT NULL,              -- received | processed | refused | failed
        -- empty for a message processed on receipt: its bytes are in the archive
        envelope BLOB NOT NULL, received_at TEXT NOT NULL, outcome TEXT,
        UNIQUE (sender, mesg_type, mesg_id)
    )""",
    # Only rows still to be processed are looked up by state (start-up, the sweeper); a
    # message processed in the work that receives it is written processed and never
    # enters this index. (It replaces an index of every row's state.)
    "CREATE INDEX IF NOT EXISTS inbox_received ON inbox (id) WHERE state = 'received'",
    "DROP INDEX IF EXISTS inbox_state",
    """CREATE TABLE IF NOT EXISTS archive (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        direction TEXT NOT NULL, mesg_type TEXT NOT NULL, mesg_id TEXT NOT NULL,
        sender TEXT NOT NULL, receiver TEXT NOT NULL, at TEXT NOT NULL,
        payment_id TEXT, envelope BLOB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS archive_mesg ON archive (mesg_id)",
    # An operator's view of a payment lists its messages by payment id; without this
    # index that view read the whole archive.
    "CREATE INDEX IF NOT EXISTS archive_payment ON archive (payment_id) "
    "WHERE payment_id IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS sequences (
        name TEXT PRIMARY KEY, value INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS alerts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL, code TEXT NOT NULL, detail TEXT NOT NULL
    )""",
    # Alerts are read by code, the latest first: whether the alert of an episode going on
    # is still open (gateway.ops.attention), the open alerts of a code whose cause ended,
    # to close them (critical.unclosed), the day end's and the settlement watch's own.
    "CREATE INDEX IF NOT EXISTS alerts_code ON alerts (code, id)",
    """CREATE TABLE IF NOT EXISTS recon (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        work_date TEXT NOT NULL, system TEXT NOT NULL, at TEXT NOT NULL,
        reconciled INTEGER NOT NULL, differences TEXT NOT NULL,
        totals TEXT NOT NULL DEFAULT '{}'
    )""",
    # Reconciliations asked of the NPC and whether it answered (gateway.recon: hvps.710
    # by work date, beps.720 by netting date), one row a system and date.
    """CREATE TABLE IF NOT EXISTS recon_asks (
        system TEXT NOT NULL, work_date TEXT NOT NULL, asked_at TEXT NOT NULL,
        answered_at TEXT, alert_id INTEGER,
        PRIMARY KEY (system, work_date)
    )""",
    # The HVPS reconciliation each closed work date is owed (gateway.recon.owe): recorded
    # in the transaction that closes the ledger day, done when the NPC's hvps.711 for
    # the date is compared, so that a stop between the close and the answer leaves the
    # work to the next start or tick (gateway.dayend.DayEnd.finish_owed).
    # Settlements the NPC made on a date whose ledger day had closed, booked on a later
    # one (gateway.late_entries), and whether the closed day's note lists them yet.
    """CREATE TABLE IF NOT EXISTS late_entries (
        entry_id INTEGER PRIMARY KEY, closed_date TEXT NOT NULL, booked_on TEXT NOT NULL,
        source TEXT NOT NULL, debit_fen INTEGER NOT NULL, credit_fen INTEGER NOT NULL,
        at TEXT NOT NULL, alert_id INTEGER, noted_at TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS recon_owed (
        work_date TEXT PRIMARY KEY, owed_at TEXT NOT NULL, done_at TEXT,
        alert_id INTEGER
    )""",
]


# Columns added to a table after databases were made with it: each is added to a table
# made without it when the store opens (a CREATE TABLE IF NOT EXISTS leaves it as it is).
ADDED_COLUMNS = {
    "outbox": [("untaken", "INTEGER NOT NULL DEFAULT 0")],
    # kind: the key_reuse.Kind name of a debit or periodic credit; null for a transfer
    # (gateway.key_reuse.first_kind).
    "idempotency": [("request", "TEXT"), ("kind", "TEXT")],
    "recon": [("totals", "TEXT NOT NULL DEFAULT '{}'")],
}


class Store:
    """Runs database work on one thread, committing concurrent work together."""

    def __init__(self, url: str, ledger_service: "ledger.Ledger") -> None:
        self.url = url
        self.ledger = ledger_service
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db")
        # (work, future, runs so far); a work that lost a race comes back with runs + 1.
        self._pending: list[tuple[Callable[[Any], Any], asyncio.Future, int]] = []
        self._flushing = False
        self._db: Any = None
        self.commits = 0
        # Called with the entries of every committed batch (the gateway adds them to
        # Redis); entries of work that failed are dropped with its savepoint.
        self.on_commit: Callable[[list[tuple[str, dict[str, str]]]], Awaitable[None]] | None \
            = None
        self._commit_tasks: set[asyncio.Task] = set()

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._open)

    @property
    def dialect(self) -> str:
        """"sqlite" or "postgresql": the database this store opened."""
        return "sqlite" if self.url.startswith("sqlite:") else "postgresql"

    def _open(self) -> None:
        self._db = ledger.connect(self.url)
        with self._db.transaction() as tx:
            if tx.dialect == "postgresql":
                # Gateway processes starting together create the tables one at a time
                # (PostgreSQL's CREATE ... IF NOT EXISTS is not safe against a
                # concurrent one); the lock ends with this transaction.
                tx.query_one(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})", ())
            dialect.install(tx, SCHEMA + status_hold.TABLES + deployment.TABLES)
            critical.install(tx)
            for table, columns in ADDED_COLUMNS.items():
                dialect.add_columns(tx, table, columns)
            self.ledger.install(tx)
            if tx.dialect == "postgresql":
                tx.execute(f"SET lock_timeout = {LOCK_WAIT_MS}", ())

    async def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """Let pending work commit (bounded: a stop never hangs on the database)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while (self._pending or self._flushing) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        if self._pending or self._flushing:
            log.warning("event=store_closed_with_work_pending pending=%s", len(self._pending))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def run(self, work: Callable[[Any], Any]) -> Any:
        """Run `work(tx)` in a transaction (shared with other concurrent work), in the
        order submitted. (Giving a customer's payment the next transaction ahead of the
        NPC's results was measured and made both the CPU per payment and the acceptance
        p99 worse: the results then pile up and arrive in larger bursts.)"""
        future = asyncio.get_running_loop().create_future()
        self._pending.append((work, future, 0))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        if not self._pending:
            self._flushing = False
            return
        batch, self._pending = self._pending[:BATCH_MAX], self._pending[BATCH_MAX:]
        loop = asyncio.get_running_loop()
        task = loop.run_in_executor(self._executor, self._run_batch,
                                    [(w, runs) for w, _, runs in batch])
        task.add_done_callback(lambda done: self._settle(batch, done))

    def _settle(self, batch: list, done: asyncio.Future) -> None:
        error = done.exception()
        results, entries = (None, []) if error else done.result()
        if entries and self.on_commit is not None:
            task = asyncio.get_running_loop().create_task(self.on_commit(entries))
            self._commit_tasks.add(task)
            task.add_done_callback(self._commit_done)
        reruns = []
        for i, (work, future, runs) in enumerate(batch):
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            elif results[i] is _RUN_AGAIN:
                reruns.append((work, future, runs + 1))
            elif isinstance(results[i], BaseException):
                future.set_exception(results[i])
            else:
                future.set_result(results[i])
        self._pending[:0] = reruns
        self._flush()

    def _commit_done(self, task: asyncio.Task) -> None:
        self._commit_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Not fatal: the rows are committed and the sweeper puts them on the streams.
            log.warning("event=after_commit_failed error=%r", task.exception())

    def _run_batch(self, works: list[tuple[Callable[[Any], Any], int]]
                   ) -> tuple[list[Any], list[tuple[str, dict[str, str]]]]:
        for attempt in range(RERUNS_MAX + 1):
            try:
                return self._run_batch_once(works)
            except Exception as exc:
                if not lost_race(exc) or attempt == RERUNS_MAX:
                    raise
                log.warning("event=transaction_run_again works=%s attempt=%s error=%r",
                            len(works), attempt + 1, exc)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _run_batch_once(self, works: list[tuple[Callable[[Any], Any], int]]
                        ) -> tuple[list[Any], list[tuple[str, dict[str, str]]]]:
        results: list[Any] = []
        entries: list[tuple[str, dict[str, str]]] = []
        lines: list[tuple[logging.Logger, int, list[str]]] = []
        # What the works that succeeded gathered (`gather`), written once they have run.
        gathered: dict[str, tuple[Callable[[Any, list[Any]], None], list[Any]]] = {}
        # How to set back the in-memory changes of the works that succeeded (`on_undo`),
        # should the transaction fail after them; dropped once it commits.
        undos: list[Callable[[], None]] = []
        try:
            with self._db.transaction() as tx:
                for work, runs in works:
                    results.append(self._run_work(tx, work, runs, entries, lines, gathered,
                                                  undos))
                if gathered:
                    # Should this fail, the transaction fails with every work in it, as its
                    # commit would.
                    _local.entries, _local.lines, _local.undo = [], [], []
                    try:
                        _write_gathered(tx, gathered)
                        entries.extend(_local.entries)
                        lines.extend(_local.lines)
                        undos.extend(_local.undo)
                        _local.undo.clear()
                    finally:
                        workstate.run_undo(_local.undo)
                        _local.entries = _local.lines = _local.undo = None
        except BaseException:
            workstate.run_undo(undos)
            raise
        self.commits += 1
        if lines:
            for logger, level, messages in lines:
                logs.log_lines(logger, level, messages)
            logs.write_now()
        return results, entries

    @staticmethod
    def _run_work(tx: Any, work: Callable[[Any], Any], runs: int,
                  entries: list[tuple[str, dict[str, str]]],
                  lines: list[tuple[logging.Logger, int, list[str]]],
                  gathered: dict[str, tuple[Callable[[Any, list[Any]], None], list[Any]]],
                  undos: list[Callable[[], None]]) -> Any:
        """One piece of work of a transaction, in its own savepoint: its result, or the
        error it failed with (`_RUN_AGAIN` when it lost a race). What it keeps until the
        commit joins the transaction's when it succeeds; when it fails its in-memory
        changes are set back with its rows."""
        _local.entries, _local.lines, _local.gathered, _local.undo = [], [], {}, []
        try:
            with tx.savepoint():
                result = work(tx)
            entries.extend(_local.entries)
            lines.extend(_local.lines)
            for key, (write, items) in _local.gathered.items():
                gathered.setdefault(key, (write, []))[1].extend(items)
            undos.extend(_local.undo)
            _local.undo.clear()
            return result
        except PaygateError as exc:
            return exc
        except Exception as exc:
            if lost_race(exc) and runs < RERUNS_MAX:
                log.info("event=work_run_again runs=%s error=%r", runs + 1, exc)
                return _RUN_AGAIN
            # A bug in one piece of work fails only that one.
            log.exception("event=db_work_failed error=%s", exc)
            return exc
        finally:
            workstate.run_undo(_local.undo)
            _local.entries = _local.lines = _local.gathered = _local.undo = None


# The result of a piece of work that lost a race: queue it for the next transaction.
_RUN_AGAIN = object()
