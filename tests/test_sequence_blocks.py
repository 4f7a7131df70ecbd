"""Numbers of a sequence on SQLite: a transaction that numbers many things takes them a
block at a time and gives back what it did not hand out, so that numbers run on from one
transaction to the next as if taken one by one; a savepoint rolled back gives back the
numbers taken inside it; nothing is ever handed out twice."""

from __future__ import annotations

import pytest

import ledger
from gateway import dialect, payments
from gateway.store import SCHEMA


@pytest.fixture()
def db(tmp_path):
    database = ledger.connect(f"sqlite:///{tmp_path / 'seq.db'}")
    with database.transaction() as tx:
        dialect.install(tx, SCHEMA)
    yield database
    database.close()


def _stored(db, name):
    with db.transaction() as tx:
        row = tx.query_one("SELECT value FROM sequences WHERE name = ?", (name,))
    return None if row is None else row[0]


def test_numbers_run_on_across_transactions_without_gaps(db):
    with db.transaction() as tx:
        assert [payments.next_seq(tx, "a") for _ in range(3)] == [1, 2, 3]
    assert _stored(db, "a") == 3  # the rest of the block was given back
    with db.transaction() as tx:
        assert payments.next_seq(tx, "a") == 4
    with db.transaction() as tx:
        got = [payments.next_seq(tx, "a") for _ in range(payments.SEQUENCE_BLOCK + 5)]
    assert got == list(range(5, 5 + payments.SEQUENCE_BLOCK + 5))
    assert _stored(db, "a") == got[-1]


def test_a_rolled_back_savepoint_gives_back_its_numbers(db):
    with db.transaction() as tx:
        assert payments.next_seq(tx, "a") == 1
        assert payments.next_seq(tx, "a") == 2  # a block is taken here
        with pytest.raises(RuntimeError):
            with tx.savepoint():
                assert payments.next_seq(tx, "a") == 3
                raise RuntimeError("undone")
        assert payments.next_seq(tx, "a") == 3
        with pytest.raises(RuntimeError):
            with tx.savepoint():  # the first number of "b", and its block, undone
                assert [payments.next_seq(tx, "b") for _ in range(2)] == [1, 2]
                raise RuntimeError("undone")
        assert payments.next_seq(tx, "b") == 1
    assert _stored(db, "a") == 3 and _stored(db, "b") == 1


def test_numbers_taken_otherwise_meanwhile_are_never_handed_out_again(db):
    with db.transaction() as tx:
        first = [payments.next_seq(tx, "a") for _ in range(2)]
        block = payments.reserve_seq(tx, "a", 10)
        after = [payments.next_seq(tx, "a") for _ in range(3)]
    taken = first + list(range(block, block + 10)) + after
    assert len(set(taken)) == len(taken)
    with db.transaction() as tx:  # nothing was given back over the reserved block
        later = payments.next_seq(tx, "a")
    assert later > max(taken)


def test_a_failed_transaction_hands_out_its_numbers_again(db):
    with pytest.raises(RuntimeError):
        with db.transaction() as tx:
            [payments.next_seq(tx, "a") for _ in range(5)]
            raise RuntimeError("undone")
    with db.transaction() as tx:
        assert payments.next_seq(tx, "a") == 1
