"""The simulator's durable state in one SQLite file: balances, payments (the central queue
is the payments in status PR12), the duplicate set, the outbox and counters.

Each inbound message is processed as one atomic unit (a transaction, or a savepoint of
one that takes several, intake.py) that records it as seen, moves the money and puts
every answer in the outbox; the outbox is delivered afterwards, and the bank is told a
message was taken only once it is committed. So a restart loses nothing and settles
nothing twice: a message taken before the restart is a duplicate after it, and answers
not yet delivered are delivered then.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, NamedTuple

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS balances (
    participant TEXT PRIMARY KEY, balance_fen INTEGER NOT NULL CHECK (balance_fen >= 0));
CREATE TABLE IF NOT EXISTS seen (
    sender TEXT NOT NULL, mesg_type TEXT NOT NULL, mesg_id TEXT NOT NULL,
    received_at TEXT NOT NULL, PRIMARY KEY (sender, mesg_type, mesg_id));
CREATE TABLE IF NOT EXISTS payments (
    id INTEGER PRIMARY KEY,
    sender TEXT NOT NULL, receiver TEXT NOT NULL,
    mesg_type TEXT NOT NULL, mesg_id TEXT NOT NULL, msg_id TEXT NOT NULL,
    end_to_end_id TEXT NOT NULL, tx_id TEXT NOT NULL,
    business_type TEXT NOT NULL, priority_rank INTEGER NOT NULL,
    amount_fen INTEGER NOT NULL, status TEXT NOT NULL,
    received_on TEXT NOT NULL, settled_on TEXT, received_at TEXT NOT NULL,
    settled_at TEXT, raw BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS payments_queue ON payments (status, sender, priority_rank, id);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY, dest TEXT NOT NULL, mesg_type TEXT NOT NULL,
    mesg_id TEXT NOT NULL, raw BLOB NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (dest, state, seq);
CREATE TABLE IF NOT EXISTS skews (
    participant TEXT PRIMARY KEY, count INTEGER NOT NULL, amount_fen INTEGER NOT NULL);
"""

# Pages of write-ahead log after which a commit copies the log back (Store.__init__).
WAL_CHECKPOINT_PAGES = 8000
# Rows one UPDATE marks delivered (`Store.mark_many`), within SQLite's bound on parameters.
MARK_ROWS_MAX = 400

# Payment statuses the simulator uses (SPEC.md d.2).
SETTLED, CANCELLED, REJECTED, QUEUED = "PR04", "PR08", "PR09", "PR12"

# Outbox states: waiting, handed over (2xx or in-process), given up after the bounded
# retries, refused with a 4xx, or thrown away on purpose by a fault.
PENDING, SENT, UNDELIVERED, REFUSED, DROPPED, LOST = (
    "pending", "sent", "undelivered", "refused", "dropped", "lost")

# The outbox's retry schedule and order, added to a database made before them
# (simulators.link): `chain` names the messages to a bank that must reach it in the order
# made (NULL: none); `tries` counts the tries since the message's retries began
# (`retry_since`), `retry_at` is when it is due again (NULL: now). Both times are seconds
# of the delivering process's event-loop clock, so they are cleared at every start.
OUTBOX_COLUMNS = (("chain", "TEXT"), ("tries", "INTEGER NOT NULL DEFAULT 0"),
                  ("retry_since", "REAL"), ("retry_at", "REAL"))
# A chained message is due only when no earlier pending message of its chain to that
# bank waits: the look-up this index serves.
CHAIN_INDEX = ("CREATE INDEX IF NOT EXISTS outbox_chain ON outbox (dest, chain, seq) "
               f"WHERE state = '{PENDING}' AND chain IS NOT NULL")


# Rows read and made on every payment are named tuples: immutable as a frozen dataclass,
# and made in a fraction of its time (0.6 against 4.4 µs for a payment's fifteen fields,
# whose frozen construction sets each field through object.__setattr__).
class PaymentRow(NamedTuple):
    id: int
    sender: str
    receiver: str
    mesg_type: str
    mesg_id: str
    msg_id: str
    end_to_end_id: str
    tx_id: str
    business_type: str
    priority_rank: int
    amount_fen: int
    status: str
    received_on: str
    settled_on: str | None
    raw: bytes


class OutboxRow(NamedTuple):
    seq: int
    dest: str
    mesg_type: str
    mesg_id: str
    raw: bytes
    attempts: int
    tries: int = 0  # tries since its retries began (0: its next try is the first)
    retry_since: float | None = None  # when they began, on the event-loop clock


_PAYMENT_COLUMNS = ("id, sender, receiver, mesg_type, mesg_id, msg_id, end_to_end_id, tx_id, "
                    "business_type, priority_rank, amount_fen, status, received_on, "
                    "settled_on, raw")


# The values a transaction kept in memory (Store._write_counts), each row set whole.
_WRITE_COUNTER = ("INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) "
                  "DO UPDATE SET value = excluded.value")
_WRITE_BALANCE = ("INSERT INTO balances (participant, balance_fen) VALUES (?, ?) "
                  "ON CONFLICT (participant) DO UPDATE SET balance_fen = excluded.balance_fen")


class _Transaction:
    """Store.transaction. Every envelope the NPC takes opens one (joining the transaction
    of its batch), so it is a small class with its steps written out rather than a
    generator-based context manager, which cost about twice as much a scope."""

    __slots__ = ("store",)

    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self) -> None:
        store = self.store
        if store._depth:
            store._depth += 1
            return
        store.conn.execute("BEGIN IMMEDIATE")
        store._depth = 1

    def __exit__(self, kind: Any, exc: Any, trace: Any) -> None:
        store = self.store
        if store._depth > 1:
            store._depth -= 1
            return
        try:
            if kind is None:
                try:
                    store._write_counts()
                    store.conn.execute("COMMIT")
                except BaseException:
                    store._abandon()
                    raise
                store._counts_dirty.clear()
                store._balances_dirty.clear()
            else:
                store._abandon()
        finally:
            store._depth = 0


class _Savepoint:
    """Store.savepoint: a small class, as _Transaction, for the savepoint each envelope
    of a group commit is taken in."""

    __slots__ = ("store", "outer", "counts", "dirty", "balances", "moved")

    def __init__(self, store: Store) -> None:
        self.store = store
        self.outer: _Transaction | None = None

    def __enter__(self) -> None:
        store = self.store
        if not store._depth:
            self.outer = _Transaction(store)
            self.outer.__enter__()
            return
        self.counts, self.dirty = dict(store._counts), set(store._counts_dirty)
        self.balances, self.moved = dict(store._balances), set(store._balances_dirty)
        store.conn.execute("SAVEPOINT unit")
        store._depth += 1

    def __exit__(self, kind: Any, exc: Any, trace: Any) -> None:
        if self.outer is not None:
            self.outer.__exit__(kind, exc, trace)
            return
        store = self.store
        try:
            if kind is None:
                store.conn.execute("RELEASE unit")
            else:
                store.conn.execute("ROLLBACK TO unit")
                store.conn.execute("RELEASE unit")
                store._counts, store._counts_dirty = self.counts, self.dirty
                store._balances, store._balances_dirty = self.balances, self.moved
                store._meta.clear()
                store._queuers = None
        finally:
            store._depth -= 1


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path), isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        # As the gateway's database (ledger.db): every envelope is taken in a savepoint,
        # whose journal of the pages it changes serves only a rollback inside the open
        # transaction, so memory holds it instead of a temporary file written page by
        # page; a group commit of a few hundred envelopes keeps its pages in a 16 MiB
        # cache instead of spilling them to the log before its COMMIT; and the log is
        # copied back into the database every 8,000 pages instead of 1,000, so a page
        # every payment rewrites (a balance, the right edge of the outbox and its index,
        # the counters) is copied once per 8,000 pages of log. The log grows to about
        # 32 MiB between copies.
        self.conn.execute("PRAGMA temp_store=MEMORY")
        self.conn.execute("PRAGMA cache_size=-16384")
        self.conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        self.conn.executescript(SCHEMA)
        self._add_outbox_columns()
        self._depth = 0
        # Counters and sequences are read and bumped several times per message; inside a
        # transaction they are kept here and written once, just before COMMIT, so they
        # stay exactly as durable as the rows that used them. `_counts_dirty` names those
        # to write; a rollback forgets the cached values so they are read again.
        self._counts: dict[str, int] = {}
        self._counts_dirty: set[str] = set()
        self._meta: dict[str, str | None] = {}
        # Clearing balances likewise: a settlement reads the payer's balance and moves two
        # (three statements a payment when each went to the table); inside a transaction
        # they are kept here and written once per account just before COMMIT, the CHECK
        # that no balance goes below zero made here when a move is made. Those read
        # stay kept after the commit (this process is the database's only writer).
        self._balances: dict[str, int] = {}
        self._balances_dirty: set[str] = set()
        # The payers that may have credits in the central queue (None: not known, read
        # again from the table). Most payments find their payer's and their payee's queue
        # empty; this set answers that without the two look-ups a payment made for it.
        # It holds every payer with a queued credit, and may hold one whose queue has
        # just emptied until `queued` finds it empty. A rollback forgets it.
        self._queuers: set[str] | None = None

    def _add_outbox_columns(self) -> None:
        have = {row[1] for row in self.conn.execute("PRAGMA table_info(outbox)")}
        for name, kind in OUTBOX_COLUMNS:
            if name not in have:
                self.conn.execute(f"ALTER TABLE outbox ADD COLUMN {name} {kind}")
        self.conn.execute(CHAIN_INDEX)

    def close(self) -> None:
        self.conn.close()

    def transaction(self) -> _Transaction:
        """One atomic unit; nested calls join the outer one."""
        return _Transaction(self)

    def savepoint(self) -> _Savepoint:
        """A unit inside the current transaction that fails alone: its statements and
        counter changes are undone, the transaction's other work stays. Outside a
        transaction it is a transaction of its own."""
        return _Savepoint(self)

    def _write_counts(self) -> None:
        """Write the counters and balances kept for the transaction, before its COMMIT."""
        self._write_kept(_WRITE_COUNTER, self._counts, self._counts_dirty)
        self._write_balances()

    def _write_balances(self) -> None:
        self._write_kept(_WRITE_BALANCE, self._balances, self._balances_dirty)

    def _write_kept(self, upsert: str, kept: dict[str, int], dirty: set[str]) -> None:
        """Write the kept values `dirty` names; the names stay until the COMMIT is made, so
        that a COMMIT that fails forgets those values as a rollback does."""
        if dirty:
            self.conn.executemany(upsert, [(key, kept[key]) for key in sorted(dirty)])

    def _abandon(self) -> None:
        """Undo the open transaction and forget what memory kept of it. A COMMIT that
        failed may have left the transaction open (a deferred constraint, a busy
        database) or had SQLite roll it back itself (a full disk, an I/O error): either
        way none of its work is in the database, so none of it may stay in memory."""
        try:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
        finally:
            self._forget_cached()

    def _forget_cached(self) -> None:
        for name in self._counts_dirty:
            self._counts.pop(name, None)
        self._counts_dirty.clear()
        for code in self._balances_dirty:
            self._balances.pop(code, None)
        self._balances_dirty.clear()
        self._meta.clear()
        self._queuers = None

    # meta and counters

    def meta(self, key: str) -> str | None:
        """A setting such as the HVPS status; read once, then kept (this process is the
        database's only writer)."""
        if key not in self._meta:
            row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            self._meta[key] = row[0] if row else None
        return self._meta[key]

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) "
                          "DO UPDATE SET value = excluded.value", (key, value))
        self._meta[key] = value

    def add(self, name: str, delta: int = 1) -> int:
        """Bump a counter or sequence; returns its new value. Written at once outside a
        transaction, at its commit inside one."""
        if not self._depth:
            row = self.conn.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) "
                "DO UPDATE SET value = value + excluded.value RETURNING value",
                (name, delta)).fetchone()
            self._counts[name] = int(row[0])
            return self._counts[name]
        value = self.counter(name) + delta
        self._counts[name] = value
        self._counts_dirty.add(name)
        return value

    def counter(self, name: str) -> int:
        if name not in self._counts:
            row = self.conn.execute("SELECT value FROM counters WHERE name = ?",
                                    (name,)).fetchone()
            self._counts[name] = int(row[0]) if row else 0
        return self._counts[name]

    # balances

    def seed_balance(self, participant: str, balance_fen: int) -> None:
        self.conn.execute("INSERT OR IGNORE INTO balances (participant, balance_fen) "
                          "VALUES (?, ?)", (participant, balance_fen))

    def balance(self, participant: str) -> int:
        """A clearing account's balance; 0 for an account not opened yet."""
        fen = self._balances.get(participant)
        if fen is None:
            row = self.conn.execute("SELECT balance_fen FROM balances WHERE participant = ?",
                                    (participant,)).fetchone()
            if row is None:
                return 0
            fen = self._balances[participant] = int(row[0])
        return fen

    def move(self, participant: str, delta_fen: int) -> int:
        """Add to (or take from) a clearing account; a move that would take it below zero
        is refused (sqlite3.IntegrityError, as the table's CHECK refuses it). An account
        not seen before opens at zero. Written at once outside a transaction, at its
        commit inside one."""
        fen = self.balance(participant) + delta_fen
        if fen < 0:
            raise sqlite3.IntegrityError(
                f"CHECK constraint failed: balance_fen >= 0 ({participant} would hold {fen})")
        self._balances[participant] = fen
        self._balances_dirty.add(participant)
        if not self._depth:
            try:
                self._write_balances()
            except BaseException:
                self._forget_cached()
                raise
            self._balances_dirty.clear()
        return fen

    def balances(self) -> dict[str, int]:
        """Every account's balance, as the open transaction will commit them."""
        rows = self.conn.execute("SELECT participant, balance_fen FROM balances")
        fen = {code: int(value) for code, value in rows}
        fen.update((code, self._balances[code]) for code in self._balances_dirty)
        return dict(sorted(fen.items()))

    # the duplicate set

    def remember(self, sender: str, mesg_type: str, mesg_id: str, at: str) -> bool:
        """Record a message as seen; False when it had been seen before."""
        cur = self.conn.execute("INSERT OR IGNORE INTO seen VALUES (?, ?, ?, ?)",
                                (sender, mesg_type, mesg_id, at))
        return cur.rowcount == 1

    def was_seen(self, sender: str, mesg_type: str, mesg_id: str) -> bool:
        row = self.conn.execute("SELECT 1 FROM seen WHERE sender = ? AND mesg_type = ? AND "
                                "mesg_id = ?", (sender, mesg_type, mesg_id)).fetchone()
        return row is not None

    # payments and the central queue

    def insert_payment(self, values: dict[str, object]) -> int:
        names = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        cur = self.conn.execute(f"INSERT INTO payments ({names}) VALUES ({marks})",
                                tuple(values.values()))
        if values["status"] == QUEUED and self._queuers is not None:
            self._queuers.add(str(values["sender"]))
        return int(cur.lastrowid)

    def set_status(self, payment_id: int, status: str, settled_on: str | None = None,
                   settled_at: str | None = None) -> None:
        self.conn.execute("UPDATE payments SET status = ?, settled_on = ?, settled_at = ? "
                          "WHERE id = ?", (status, settled_on, settled_at, payment_id))
        if status == QUEUED:
            self._queuers = None  # whose payment it is is not known here

    def _queued_payers(self) -> set[str]:
        """The payers that may have queued credits (`_queuers`), read when not known."""
        if self._queuers is None:
            rows = self.conn.execute("SELECT DISTINCT sender FROM payments WHERE status = ?",
                                     (QUEUED,))
            self._queuers = {row[0] for row in rows}
        return self._queuers

    def payment(self, payment_id: int) -> PaymentRow:
        row = self.conn.execute(f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE id = ?",
                                (payment_id,)).fetchone()
        assert row is not None, f"payment {payment_id} exists"
        return PaymentRow(*row)

    def queued(self, sender: str | None = None) -> list[PaymentRow]:
        """Queued payments in release order: URGT, HIGH, NORM, then first come first."""
        where, args = ("status = ?", [QUEUED])
        if sender is not None:
            if sender not in self._queued_payers():
                return []
            where, args = (where + " AND sender = ?", args + [sender])
        rows = self.conn.execute(f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE {where} "
                                 "ORDER BY priority_rank, id", args)
        found = [PaymentRow(*row) for row in rows]
        if sender is None:
            self._queuers = {row.sender for row in found}
        elif not found:
            self._queued_payers().discard(sender)
        return found

    def queued_ahead(self, sender: str, priority_rank: int) -> bool:
        """True when a queued credit of the sender has the same or a higher priority (a
        lower or equal rank): a new credit may not overtake it."""
        if sender not in self._queued_payers():
            return False
        row = self.conn.execute(
            "SELECT 1 FROM payments WHERE status = ? AND sender = ? AND priority_rank <= ?"
            " LIMIT 1", (QUEUED, sender, priority_rank)).fetchone()
        return row is not None

    def count_status(self, status: str) -> int:
        row = self.conn.execute("SELECT count(*) FROM payments WHERE status = ?",
                                (status,)).fetchone()
        return int(row[0])

    def settled_twice(self) -> list[str]:
        """End-to-end and transaction ids settled more than once by the same payer."""
        rows = self.conn.execute(
            "SELECT id_value FROM ("
            " SELECT sender, end_to_end_id AS id_value FROM payments WHERE status = ?"
            " UNION ALL"
            " SELECT sender, tx_id FROM payments WHERE status = ? AND tx_id != end_to_end_id"
            ") GROUP BY sender, id_value HAVING count(*) > 1 ORDER BY id_value",
            (SETTLED, SETTLED))
        return [row[0] for row in rows]

    def payment_totals(self, participant: str, day: str) -> list[tuple]:
        """(mt, business type, sent count, sent fen, received count, received fen) of the
        payments settled on `day` where the participant paid or was paid."""
        return self.conn.execute(
            "SELECT mesg_type, business_type,"
            " sum(sender = :p), sum(CASE WHEN sender = :p THEN amount_fen ELSE 0 END),"
            " sum(receiver = :p), sum(CASE WHEN receiver = :p THEN amount_fen ELSE 0 END)"
            " FROM payments WHERE status = :s AND settled_on = :d"
            " AND (sender = :p OR receiver = :p)"
            " GROUP BY mesg_type, business_type ORDER BY mesg_type, business_type",
            {"p": participant, "s": SETTLED, "d": day}).fetchall()

    def message_totals(self, participant: str, day: str) -> list[tuple]:
        """(mt, business type, status, sent count, received count) of the payment messages
        taken on `day`; a receiver counts only what was forwarded to it (settled)."""
        return self.conn.execute(
            "SELECT mesg_type, business_type, status, sum(sender = :p),"
            " sum(receiver = :p AND status = :s)"
            " FROM payments WHERE received_on = :d AND (sender = :p OR receiver = :p)"
            " GROUP BY mesg_type, business_type, status"
            " HAVING sum(sender = :p) + sum(receiver = :p AND status = :s) > 0"
            " ORDER BY mesg_type, business_type, status",
            {"p": participant, "s": SETTLED, "d": day}).fetchall()

    # the outbox

    def enqueue(self, dest: str, mesg_type: str, mesg_id: str, raw: bytes, at: str,
                chain: str | None = None) -> int:
        """Put a message in the outbox; `chain` names the messages to `dest` it must
        follow in the order made (None: it may overtake one waiting for a retry)."""
        cur = self.conn.execute(
            "INSERT INTO outbox (dest, mesg_type, mesg_id, raw, state, created_at, updated_at,"
            " chain) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (dest, mesg_type, mesg_id, raw, PENDING, at, at, chain))
        return int(cur.lastrowid)

    def pending(self, dest: str, limit: int) -> list[OutboxRow]:
        """Messages to `dest` not yet delivered, in outbox order, due or not."""
        rows = self.conn.execute(
            "SELECT seq, dest, mesg_type, mesg_id, raw, attempts, tries, retry_since"
            " FROM outbox WHERE dest = ? AND state = ? ORDER BY seq LIMIT ?",
            (dest, PENDING, limit))
        return [OutboxRow(*row) for row in rows]

    def due(self, dest: str, limit: int, now_s: float) -> list[OutboxRow]:
        """Messages to `dest` to try now (`now_s` on the event-loop clock), in outbox
        order: pending, not waiting for a later try, and not behind an earlier pending
        message of their chain (which may itself be waiting)."""
        rows = self.conn.execute(_DUE, (dest, now_s, limit))
        return [OutboxRow(*row) for row in rows]

    def next_retry_at(self, dest: str) -> float | None:
        """When the first message to `dest` waiting for a later try is due; None when
        none waits."""
        row = self.conn.execute("SELECT min(retry_at) FROM outbox WHERE dest = ? AND "
                                "state = ? AND retry_at IS NOT NULL", (dest, PENDING))
        return row.fetchone()[0]

    def mark(self, seq: int, state: str, attempts: int, at: str) -> None:
        """A message's delivery ended (`state`), after `attempts` tries in all."""
        self.conn.execute("UPDATE outbox SET state = ?, attempts = ?, updated_at = ?, "
                          "retry_at = NULL WHERE seq = ?", (state, attempts, at, seq))

    def mark_many(self, ends: list[tuple[int, str, int]], at: str) -> None:
        """Several deliveries ended, each (seq, state, attempts): one UPDATE for each
        (state, attempts) they share, a few hundred rows at a time (a POST's 32 messages
        marked one by one cost a statement each)."""
        groups: dict[tuple[str, int], list[int]] = {}
        for seq, state, attempts in ends:
            groups.setdefault((state, attempts), []).append(seq)
        for (state, attempts), seqs in groups.items():
            for start in range(0, len(seqs), MARK_ROWS_MAX):
                part = seqs[start:start + MARK_ROWS_MAX]
                self.conn.execute(
                    "UPDATE outbox SET state = ?, attempts = ?, updated_at = ?, retry_at = NULL"
                    f" WHERE seq IN ({', '.join('?' * len(part))})",
                    (state, attempts, at, *part))

    def retry_later(self, seq: int, attempts: int, at: str, tries: int, since: float,
                    retry_at: float) -> None:
        """A message the bank did not take stays pending, due again at `retry_at`, its
        `tries` since its retries began at `since` counted."""
        self.conn.execute("UPDATE outbox SET attempts = ?, updated_at = ?, tries = ?, "
                          "retry_since = ?, retry_at = ? WHERE seq = ?",
                          (attempts, at, tries, since, retry_at, seq))

    def retry_now(self, restart: bool = False) -> list[str]:
        """Pending messages waiting for a later try are due now (a redelivery); with
        `restart`, their retries begin again too (a start: the times were of the
        process before). Their destinations."""
        reset = ", tries = 0, retry_since = NULL" if restart else ""
        rows = self.conn.execute(
            f"UPDATE outbox SET retry_at = NULL{reset} WHERE state = ? AND "
            "(retry_at IS NOT NULL OR retry_since IS NOT NULL) RETURNING dest", (PENDING,))
        return sorted({row[0] for row in rows.fetchall()})

    def reset(self, states: tuple[str, ...], at: str) -> list[str]:
        """Put messages in the given states back to pending, their retries to begin
        again; returns their destinations."""
        marks = ", ".join("?" for _ in states)
        rows = self.conn.execute(
            f"UPDATE outbox SET state = ?, updated_at = ?, tries = 0, retry_since = NULL, "
            f"retry_at = NULL WHERE state IN ({marks}) RETURNING dest",
            (PENDING, at, *states)).fetchall()
        return sorted({row[0] for row in rows})

    def outbox_counts(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT state, count(*) FROM outbox GROUP BY state")
        return {state: int(n) for state, n in rows}

    def destinations_pending(self) -> list[str]:
        rows = self.conn.execute("SELECT DISTINCT dest FROM outbox WHERE state = ?",
                                 (PENDING,))
        return [row[0] for row in rows]

    # reconciliation skew

    def set_skew(self, participant: str, count: int, amount_fen: int) -> None:
        self.conn.execute("INSERT INTO skews VALUES (?, ?, ?) ON CONFLICT (participant) "
                          "DO UPDATE SET count = excluded.count, "
                          "amount_fen = excluded.amount_fen", (participant, count, amount_fen))

    def skew(self, participant: str) -> tuple[int, int]:
        row = self.conn.execute("SELECT count, amount_fen FROM skews WHERE participant = ?",
                                (participant,)).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)


# Due messages of one destination (Store.due): a chained one only when no earlier
# message of its chain to that destination is pending (CHAIN_INDEX).
_DUE = ("SELECT seq, dest, mesg_type, mesg_id, raw, attempts, tries, retry_since "
        f"FROM outbox o WHERE dest = ? AND state = '{PENDING}' "
        "AND (retry_at IS NULL OR retry_at <= ?) "
        "AND (chain IS NULL OR NOT EXISTS (SELECT 1 FROM outbox e WHERE e.dest = o.dest "
        f"AND e.chain = o.chain AND e.state = '{PENDING}' AND e.chain IS NOT NULL "
        "AND e.seq < o.seq)) ORDER BY seq LIMIT ?")
