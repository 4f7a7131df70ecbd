"""What the simulated NPC's store keeps in memory (simulators/store.py): counters, clearing
balances and the payers with queued credits must always read as the database holds them,
after a COMMIT that fails as after a rollback."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest

from simulators.store import CANCELLED, QUEUED, SETTLED, Store


def _with_deferred_key(store: Store) -> None:
    """A table whose foreign key SQLite checks only at COMMIT (the pragma is in force
    only when set outside a transaction)."""
    store.conn.execute("PRAGMA foreign_keys = ON")
    store.conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    store.conn.execute("CREATE TABLE child (parent_id INTEGER REFERENCES parent (id) "
                       "DEFERRABLE INITIALLY DEFERRED)")


def _deferred_key_broken(store: Store) -> None:
    """The deferred foreign key left broken: SQLite refuses the COMMIT and leaves the
    transaction open."""
    store.conn.execute("INSERT INTO child VALUES (42)")


class _CommitLost:
    """A connection whose next COMMIT fails as on a full disk or an I/O error: SQLite
    has rolled the transaction back by the time the error is raised."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT" and not self.failed:
            self.failed = True
            self.conn.execute("ROLLBACK")
            raise sqlite3.OperationalError("disk I/O error")
        return self.conn.execute(sql, *args)


def _commit_lost(store: Store) -> None:
    store.conn = _CommitLost(store.conn)  # type: ignore[assignment]


def _payment(sender: str, status: str, rank: int = 2, amount_fen: int = 100) -> dict:
    return {"sender": sender, "receiver": "Z", "mesg_type": "hvps.111.001.01",
            "mesg_id": "m", "msg_id": "m", "end_to_end_id": "e", "tx_id": "t",
            "business_type": "A100", "priority_rank": rank, "amount_fen": amount_fen,
            "status": status, "received_on": "2026-12-07", "settled_on": None,
            "received_at": "2026-12-07T09:00:00+08:00", "settled_at": None, "raw": b""}


def _as_stored(path: Path) -> tuple[dict[str, int], int, list[str]]:
    """Balances, the `seq` counter and the payers with queued credits, as a restarted
    process reads them from the file."""
    fresh = Store(path)
    try:
        return (fresh.balances(), fresh.counter("seq"),
                sorted({row.sender for row in fresh.queued()}))
    finally:
        fresh.close()


def _as_kept(store: Store) -> tuple[dict[str, int], int, list[str]]:
    """The same, as the store answers them from what it keeps in memory."""
    balances = {code: store.balance(code) for code in store.balances()}
    return (balances, store.counter("seq"),
            [code for code in ("A", "B", "C") if store.queued_ahead(code, 2)])


@pytest.mark.parametrize("break_commit", [_deferred_key_broken, _commit_lost],
                         ids=["commit_refused_transaction_open", "commit_lost_rolled_back"])
def test_a_failed_commit_forgets_what_memory_kept(
        tmp_path: Path, break_commit: Callable[[Store], None]) -> None:
    """When the COMMIT itself fails, the balances moved, the counters bumped and the
    credits queued in the transaction are forgotten as a rollback forgets them; the
    next transaction starts from what the database holds and commits normally."""
    path = tmp_path / "npc.sqlite3"
    store = Store(path)
    _with_deferred_key(store)
    with store.transaction():
        store.seed_balance("A", 1_000)
        store.seed_balance("B", 0)
        store.add("seq")
        store.insert_payment(_payment("C", QUEUED))
    before = _as_kept(store)

    with pytest.raises(sqlite3.DatabaseError), store.transaction():
        store.move("A", -300)
        store.move("B", 300)
        store.add("seq", 5)
        store.insert_payment(_payment("A", QUEUED))
        assert _as_kept(store) == ({"A": 700, "B": 300}, 6, ["A", "C"])
        break_commit(store)
    after_failure = _as_kept(store)
    with store.transaction():
        store.move("A", -1)
        store.add("seq")

    assert before == ({"A": 1_000, "B": 0}, 1, ["C"])
    assert not store.conn.in_transaction
    assert after_failure == before
    assert _as_kept(store) == _as_stored(path) == ({"A": 999, "B": 0}, 2, ["C"])


def test_the_queued_payers_follow_the_table(tmp_path: Path) -> None:
    """Across credits queued, settled and cancelled, savepoints undone and transactions
    rolled back, the store's answer to "has this payer queued credits?" is the table's."""
    path = tmp_path / "npc.sqlite3"
    store = Store(path)
    rng = random.Random(20261207)
    payers = ("A", "B", "C")

    def step() -> None:
        action = rng.choice(("queue", "queue", "settled", "settle", "cancel", "day_end"))
        payer = rng.choice(payers)
        if action in ("queue", "settled"):
            store.insert_payment(_payment(payer, QUEUED if action == "queue" else SETTLED,
                                          rank=rng.randrange(3)))
        elif action == "settle":  # as a release does: all the payer's queue, then look again
            for row in store.queued(payer):
                store.set_status(row.id, SETTLED)
            assert store.queued(payer) == []
        elif action == "cancel":
            for row in store.queued(payer)[:1]:
                store.set_status(row.id, CANCELLED)
        else:
            for row in store.queued():
                store.set_status(row.id, CANCELLED)

    def some_undone(scope: Callable[[], Any], work: Callable[[], None]) -> None:
        """`work` done one to three times in `scope` (a transaction or a savepoint),
        which is undone three times in ten."""
        undo = rng.random() < 0.3
        with pytest.raises(RuntimeError) if undo else nullcontext(), scope():
            for _ in range(rng.randrange(1, 4)):
                work()
            if undo:
                raise RuntimeError("undo")

    for _ in range(200):
        some_undone(store.transaction, lambda: some_undone(store.savepoint, step))
        stored = _as_stored(path)[2]
        for rank in range(3):
            assert [p for p in payers if store.queued_ahead(p, rank)] == [
                p for p in payers if _queued_at_or_above(path, p, rank)]
        assert [p for p in payers if store.queued(p)] == stored


def _queued_at_or_above(path: Path, payer: str, rank: int) -> bool:
    conn = sqlite3.connect(str(path))
    try:
        row = conn.execute("SELECT 1 FROM payments WHERE status = ? AND sender = ? AND "
                           "priority_rank <= ?", (QUEUED, payer, rank)).fetchone()
    finally:
        conn.close()
    return row is not None


def test_a_payment_with_no_queue_on_either_side_reads_no_queue(tmp_path: Path) -> None:
    """A credit settled at once, when neither its payer nor its payee has queued
    credits, runs no look-up of the central queue."""
    store = Store(tmp_path / "npc.sqlite3")
    with store.transaction():
        store.insert_payment(_payment("C", QUEUED))
    store.queued_ahead("A", 2)  # the queued payers read once
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)

    with store.transaction():
        ahead = store.queued_ahead("A", 2)
        store.insert_payment(_payment("A", SETTLED))
        payee_queue = store.queued("B")

    assert (ahead, payee_queue) == (False, [])
    assert not [s for s in statements if "FROM payments" in s]
    assert store.queued_ahead("C", 2)
