"""Group commit of the simulated NPC's inbound envelopes (simulators/intake.py) and the
store's counters and savepoints it relies on."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest

from simulators.intake import BATCH_MAX, Intake
from simulators.store import Store
from simulators.testing import PEER, simulated


def traced(store: Store) -> list[str]:
    """Every statement the store's connection runs from now on."""
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    return statements


def test_envelopes_arriving_together_are_answered_after_one_commit(tmp_path: Path) -> None:
    """Credits posted at once are all settled, in one transaction, and each request is
    answered with its own outcome."""
    async def scenario() -> tuple[list[str], list[str], dict]:
        async with simulated(tmp_path) as w:
            credits = [w.sender.credit(1_000 + i) for i in range(20)]
            statements = traced(w.sim.store)
            outcomes = await asyncio.gather(*(w.sim.intake.submit(raw) for raw in credits))
            w.sim.store.conn.set_trace_callback(None)
            await w.sim.drain()
            return outcomes, statements, w.sim.stats()

    outcomes, statements, stats = asyncio.run(scenario())
    first_transaction = statements[:statements.index("COMMIT")]

    assert outcomes == ["PR04"] * 20
    assert first_transaction.count("BEGIN IMMEDIATE") == 1
    assert first_transaction.count("RELEASE unit") == 20  # one savepoint per envelope
    assert stats["settled"] == 20
    assert stats["peers"][PEER] == {"hvps.111.001.01": 20}


def test_a_failing_envelope_is_undone_alone(tmp_path: Path) -> None:
    """When one envelope's processing raises, its request gets the error and its writes
    (rows and counters) are undone; the others in the batch stand."""
    store = Store(tmp_path / "npc.sqlite3")
    store.conn.execute("CREATE TABLE taken (raw BLOB NOT NULL)")

    def take(raw: bytes) -> str:
        store.conn.execute("INSERT INTO taken VALUES (?)", (raw,))
        store.add("messages_in")
        if raw == b"bad":
            raise RuntimeError("processing failed")
        return "taken"

    async def scenario() -> list[object]:
        intake = Intake(store, take)
        return await asyncio.gather(*(intake.submit(raw) for raw in (b"a", b"bad", b"c")),
                                    return_exceptions=True)

    outcomes = asyncio.run(scenario())
    rows = store.conn.execute("SELECT raw FROM taken ORDER BY rowid").fetchall()

    assert outcomes[0] == outcomes[2] == "taken"
    assert isinstance(outcomes[1], RuntimeError)
    assert rows == [(b"a",), (b"c",)]
    assert store.counter("messages_in") == 2
    assert Store(tmp_path / "npc.sqlite3").counter("messages_in") == 2


def test_a_batch_is_bounded(tmp_path: Path) -> None:
    """More envelopes than BATCH_MAX at once take more than one commit, in order."""
    store = Store(tmp_path / "npc.sqlite3")
    order: list[int] = []

    def take(raw: bytes) -> str:
        order.append(int(raw))
        return "taken"

    async def scenario() -> list[str]:
        intake = Intake(store, take)
        statements = traced(store)
        await asyncio.gather(*(intake.submit(str(i).encode())
                               for i in range(BATCH_MAX + 1)))
        return statements

    statements = asyncio.run(scenario())

    assert order == list(range(BATCH_MAX + 1))
    assert statements.count("COMMIT") == 2


def test_a_posts_envelopes_are_answered_together_each_with_its_outcome(
        tmp_path: Path, caplog) -> None:
    """The envelopes of one POST submitted together get their outcomes in order, a
    failing one its exception with the others standing, even when the POST is cut
    between two batches; a POST whose request went away has its failures logged."""
    store = Store(tmp_path / "npc.sqlite3")

    def take(raw: bytes) -> str:
        if raw.startswith(b"bad"):
            raise RuntimeError(f"processing {raw.decode()} failed")
        return raw.decode()

    async def scenario() -> tuple[list, list, list]:
        intake = Intake(store, take)
        statements = traced(store)
        alone = asyncio.ensure_future(intake.submit(b"first"))
        raws = [str(i).encode() for i in range(BATCH_MAX + 2)]
        raws[3] = b"bad 3"
        post = asyncio.ensure_future(intake.submit_many(raws))
        gone = asyncio.ensure_future(intake.submit_many([b"x", b"bad gone"]))
        await asyncio.sleep(0)
        gone.cancel()
        return [await alone, *await post], await intake.submit_many([]), statements

    with caplog.at_level(logging.ERROR, logger="npc.intake"):
        outcomes, empty, statements = asyncio.run(scenario())

    assert outcomes[0] == "first"
    assert outcomes[1:4] + outcomes[5:] == [str(i) for i in range(BATCH_MAX + 2) if i != 3]
    assert isinstance(outcomes[4], RuntimeError) and "bad 3" in str(outcomes[4])
    assert empty == []
    assert statements.count("COMMIT") == 2  # BATCH_MAX + 5 envelopes
    unanswered = [r for r in caplog.records if r.getMessage() == "take_failed_unanswered"]
    assert [r.kv_fields["detail"] for r in unanswered] == ["processing bad gone failed"]


def test_counters_are_written_at_commit_and_forgotten_at_rollback(tmp_path: Path) -> None:
    """Inside a transaction a counter moves in memory and reaches the database with the
    commit; a rollback, of the transaction or of a savepoint, takes it back."""
    store = Store(tmp_path / "npc.sqlite3")
    other = Store(tmp_path / "npc.sqlite3")  # what a restarted process would read

    with store.transaction():
        assert store.add("seq") == 1
        assert other.counter("seq") == 0
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.add("seq")
            raise RuntimeError("undo")
    with store.transaction():
        with pytest.raises(RuntimeError):
            with store.savepoint():
                store.add("seq", 10)
                raise RuntimeError("undo this unit only")
        store.add("seq")

    assert store.counter("seq") == 2
    assert Store(tmp_path / "npc.sqlite3").counter("seq") == 2
    assert store.add("seq") == 3  # outside a transaction: written at once
    assert Store(tmp_path / "npc.sqlite3").counter("seq") == 3


def test_balances_are_written_at_commit_and_forgotten_at_rollback(tmp_path: Path) -> None:
    """A clearing balance moved inside a transaction reaches the table with the commit
    (one statement for the account however often it moved); a rollback, of the
    transaction or of a savepoint, takes the move back; a move below zero is refused."""
    store = Store(tmp_path / "npc.sqlite3")
    with store.transaction():
        store.seed_balance("A", 1_000)
        store.seed_balance("B", 0)

    statements = traced(store)
    with store.transaction():
        for _ in range(3):
            store.move("A", -100)
            store.move("B", 100)
        assert (store.balance("A"), store.balance("B")) == (700, 300)
        assert Store(tmp_path / "npc.sqlite3").balances() == {"A": 1_000, "B": 0}
        assert store.balances() == {"A": 700, "B": 300}  # as the commit will write them
    # Each account read once and written once, with the commit.
    assert len([s for s in statements if s.startswith("SELECT balance_fen")]) == 2
    assert len([s for s in statements if s.startswith("INSERT INTO balances")]) == 2
    assert not [s for s in statements if s.startswith("UPDATE balances")]
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.move("A", -700)
            raise RuntimeError("undo")
    with store.transaction():
        with pytest.raises(RuntimeError):
            with store.savepoint():
                store.move("B", -300)
                store.move("C", 300)  # an account not seen before opens at zero
                raise RuntimeError("undo this unit only")
        with pytest.raises(sqlite3.IntegrityError):
            store.move("B", -301)
        store.move("C", 5)

    expected = {"A": 700, "B": 300, "C": 5}
    assert store.balances() == expected
    assert Store(tmp_path / "npc.sqlite3").balances() == expected
    assert store.move("A", 1) == 701  # outside a transaction: written at once
    assert Store(tmp_path / "npc.sqlite3").balance("A") == 701
    with pytest.raises(sqlite3.IntegrityError):
        store.move("A", -702)
    assert Store(tmp_path / "npc.sqlite3").balance("A") == store.balance("A") == 701


def test_our_bank_is_told_of_every_credit_in_a_batch(tmp_path: Path) -> None:
    """Each credit of a batch gets its ccms.990 and its ccms.900."""
    async def scenario() -> tuple[list[str | None], int]:
        async with simulated(tmp_path) as w:
            credits = [w.sender.credit(1_000 + i, tx_id=f"20261207{i:08d}")
                       for i in range(5)]
            await asyncio.gather(*(w.sim.intake.submit(raw) for raw in credits))
            await w.sim.drain()
            return ([original for original, _, _ in w.results()],
                    len(w.bank.envelopes("ccms.990.001.02")))

    originals, acks = asyncio.run(scenario())

    assert sorted(originals) == [f"20261207{i:08d}" for i in range(5)]
    assert acks == 5
