"""A routed payment names its class's route record by hash (table route_records) instead
of carrying a kilobyte of JSON; rows and stored answers read back as they were written,
and rows written before records existed (route JSON in the row) still read."""

from __future__ import annotations

import json

import pytest

from gateway import payments, store
from ledger.testing import fresh_books
from tests.beps_support import NOW, credit_row as _credit_row


@pytest.fixture()
def db():
    books, _ = fresh_books()
    with books.transaction() as tx:
        for statement in store.SCHEMA:
            tx.execute(statement, ())
    yield books
    books.close()


def credit_row(n: int) -> dict:
    return _credit_row(n, NOW)


RECORD = {"rule": "beps_default", "channel": "beps", "inputs": {"on_date": "2026-12-07"},
          "directory": [{"role": "payer_bank", "bank_code": "999100000027", "version": 1}]}


def _routed(n: int) -> dict:
    return dict(credit_row(n), route=RECORD, route_json=json.dumps(RECORD))


def test_routed_payments_share_one_stored_record(db):
    with db.transaction() as tx:
        payments.insert(tx, _routed(1))
        payments.insert_many(tx, [_routed(2), _routed(3)])
    with db.transaction() as tx:
        columns = {v for (v,) in tx.query("SELECT route FROM payments", ())}
        assert len(columns) == 1 and next(iter(columns)).startswith(payments.ROUTE_REF)
        assert tx.query_one("SELECT COUNT(*) FROM route_records", ())[0] == 1
        for n in (1, 2, 3):
            assert payments.get(tx, credit_row(n)["id"])["route"] == RECORD


def test_a_rolled_back_record_is_stored_again_by_the_next_payment(db):
    with pytest.raises(RuntimeError), db.transaction() as tx:
        payments.insert(tx, _routed(1))
        raise RuntimeError("rolled back")
    with db.transaction() as tx:
        payments.insert(tx, _routed(2))
    payments._route_texts.clear()   # read from the table, not from the cache
    with db.transaction() as tx:
        assert payments.get(tx, credit_row(2)["id"])["route"] == RECORD


def test_inline_routes_still_read(db):
    with db.transaction() as tx:
        payments.insert(tx, dict(credit_row(1), route={"rule": "return_to_sender"}))
        tx.execute("UPDATE payments SET route = ? WHERE id = ?",
                   (json.dumps(RECORD), credit_row(1)["id"]))
        assert payments.get(tx, credit_row(1)["id"])["route"] == RECORD


def test_a_stored_answer_replays_exactly(db):
    view = {"id": "P1", "state": "accepted", "route": RECORD, "amount": "1.00"}
    text = payments.answer_text(view, json.dumps(RECORD))
    assert len(text) < len(json.dumps(view))
    with db.transaction() as tx:
        payments.insert(tx, _routed(1))  # stores the record the answer names
        assert payments.answer_of(tx, text) == view
        assert payments.answer_of(tx, payments.answer_text(view, None)) == view


def _route_inserts(tx) -> list[str]:
    """Route-record INSERTs run by `tx` from now on (its executemany wrapped)."""
    seen: list[str] = []
    run = tx.executemany

    def counting(sql, rows):
        if "route_records" in sql:
            seen.append(sql)
        return run(sql, rows)
    tx.executemany = counting
    return seen


def test_a_transaction_stores_a_record_once_for_all_its_payments(db):
    """Payments of one transaction naming the same record store it with one statement."""
    with db.transaction() as tx:
        inserts = _route_inserts(tx)
        payments.insert(tx, _routed(1))
        payments.insert_many(tx, [_routed(2), _routed(3)])
        payments.insert(tx, _routed(4))
    assert len(inserts) == 1


def test_a_record_undone_by_a_savepoint_is_stored_again_in_the_same_transaction(db):
    """A savepoint rolled back after storing the record makes the next payment of the
    same transaction store it again; the payment's record is there once committed."""
    with db.transaction() as tx:
        inserts = _route_inserts(tx)
        with pytest.raises(RuntimeError), tx.savepoint():
            payments.insert(tx, _routed(1))
            raise RuntimeError("this payment is refused")
        payments.insert(tx, _routed(2))
    payments._route_texts.clear()   # read from the table, not from the cache
    with db.transaction() as tx:
        assert payments.get(tx, credit_row(2)["id"])["route"] == RECORD
    assert len(inserts) == 2
