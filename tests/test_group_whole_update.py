"""A package's payments moving together (payments.transition_group) are changed by one
UPDATE whose count of rows tells that every member moved, the members' ids read from the
package's items, not read back from the UPDATE (RETURNING); a change that only some
members can make is undone and made again reading back exactly the ids it changed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import ledger
from gateway import payments
from gateway.beps import items
from gateway.beps import schema as beps_schema
from gateway.store import SCHEMA

AT = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
LATER = datetime(2026, 12, 7, 9, 45, tzinfo=UTC)
PACKAGE = "999100000019P7"
MEMBERS = [f"P{n:04d}" for n in range(1, 6)]


def _database(tmp_path) -> tuple[Any, list[str]]:
    """A database with the package's five accepted payments; the statements it runs are
    recorded in the list given back."""
    db = ledger.connect(f"sqlite:///{tmp_path / 'gateway.db'}")
    with db.transaction() as tx:
        for statement in SCHEMA:
            tx.execute(statement, ())
        beps_schema.install(tx)
        for pid in MEMBERS:
            tx.execute(
                "INSERT INTO payments (id, direction, channel, state, msg_type, msg_id, "
                "tx_id, end_to_end_id, sender_direct, receiver_direct, amount_fen, currency, "
                "payer_account, payer_name, payer_bank, payee_account, payee_name, "
                "payee_bank, business_type, business_kind, urgency, priority, reason, "
                "work_date, created_at, updated_at) VALUES (?, 'out', 'beps', 'accepted', "
                "'beps.121.001.01', ?, ?, ?, '999100000019', '888200000015', 100, 'CNY', "
                "'a', 'n', 'b', 'a', 'n', 'b', 'A100', '02102', 'normal', 3, 'why', "
                "'2026-12-07', ?, ?)", (pid, pid, pid, pid, AT.isoformat(), AT.isoformat()))
            tx.execute("INSERT INTO beps_items (payment_id, kind, side, counterparty, "
                       "msg_type, amount_fen, package_id, created_at) VALUES (?, "
                       "'credit_out', 'D', '888200000015', 'beps.121.001.01', 100, ?, ?)",
                       (pid, PACKAGE, AT.isoformat()))
    statements: list[str] = []
    db._conn.set_trace_callback(statements.append)
    return db, statements


def _send_in_work(db: Any) -> list[str]:
    """The package sent as a piece of work of a group commit sends it (in a savepoint)."""
    with db.transaction() as tx, tx.savepoint():
        return payments.transition_group(tx, items.package_group(PACKAGE, len(MEMBERS)),
                                         "accepted", "sent", "beps_sent", LATER)


def _rows(db: Any) -> dict[str, tuple]:
    with db.transaction() as tx:
        return {pid: (state, reason, updated_at) for pid, state, reason, updated_at in
                tx.query("SELECT id, state, reason, updated_at FROM payments", ())}


def _history(db: Any) -> list[tuple]:
    with db.transaction() as tx:
        return tx.query("SELECT payment_id, state FROM payment_events ORDER BY id", ())


def _returning_updates(statements: list[str]) -> list[str]:
    return [s for s in statements if s.startswith("UPDATE payments") and "RETURNING" in s]


def test_a_whole_package_moves_without_reading_its_ids_back_from_the_update(tmp_path):
    """Every member accepted: all five are sent, by one UPDATE without RETURNING, and one
    history row under the package tells them."""
    db, statements = _database(tmp_path)
    try:
        moved = _send_in_work(db)
        rows, history = _rows(db), _history(db)
    finally:
        db.close()

    assert moved == MEMBERS
    assert _returning_updates(statements) == []
    assert all(rows[pid][:2] == ("sent", None) for pid in MEMBERS)
    assert history == [(items.package_subject(PACKAGE), "sent")]


def test_a_change_only_some_members_make_changes_exactly_those(tmp_path):
    """One member cancelled before: the four others are sent, each with its own history
    row; the cancelled one keeps its state, reason and time, as the UPDATE undone and made
    again left it."""
    db, statements = _database(tmp_path)
    try:
        with db.transaction() as tx:
            tx.execute("UPDATE payments SET state = 'cancelled', reason = 'asked' "
                       "WHERE id = ?", (MEMBERS[2],))
        moved = _send_in_work(db)
        rows, history = _rows(db), _history(db)
    finally:
        db.close()

    others = [pid for pid in MEMBERS if pid != MEMBERS[2]]
    assert moved == others
    assert len(_returning_updates(statements)) == 1
    assert rows[MEMBERS[2]] == ("cancelled", "asked", AT.isoformat())
    assert all(rows[pid] == ("sent", None, LATER.isoformat()) for pid in others)
    assert history == [(pid, "sent") for pid in others]


def test_outside_a_piece_of_work_the_ids_are_read_back_as_before(tmp_path):
    """No savepoint open (a transaction of its own): the UPDATE reads its ids back, and
    the whole package moves as it would inside a piece of work."""
    db, statements = _database(tmp_path)
    try:
        with db.transaction() as tx:
            moved = payments.transition_group(
                tx, items.package_group(PACKAGE, len(MEMBERS)), "accepted", "sent",
                "beps_sent", LATER)
        history = _history(db)
    finally:
        db.close()

    assert moved == MEMBERS
    assert len(_returning_updates(statements)) == 1
    assert history == [(items.package_subject(PACKAGE), "sent")]


def test_members_the_caller_read_are_not_read_again(tmp_path):
    """Given the members as the caller read them (`known`), the whole package moves with
    its UPDATE alone: neither its items nor the UPDATE's rows are read back."""
    db, statements = _database(tmp_path)
    try:
        with db.transaction() as tx, tx.savepoint():
            moved = payments.transition_group(
                tx, items.package_group(PACKAGE, len(MEMBERS)), "accepted", "sent",
                "beps_sent", LATER, known=list(reversed(MEMBERS)))
        rows, history = _rows(db), _history(db)
    finally:
        db.close()

    assert moved == MEMBERS
    assert _returning_updates(statements) == []
    assert not [s for s in statements if s.startswith("SELECT payment_id FROM beps_items")]
    assert all(rows[pid][:2] == ("sent", None) for pid in MEMBERS)
    assert history == [(items.package_subject(PACKAGE), "sent")]


def test_known_members_of_which_some_left_the_state_change_exactly_the_others(tmp_path):
    """Given all five as `known` while one is cancelled: the four others are sent, read
    back from the UPDATE made again, and the cancelled one is left as it was."""
    db, statements = _database(tmp_path)
    try:
        with db.transaction() as tx:
            tx.execute("UPDATE payments SET state = 'cancelled' WHERE id = ?", (MEMBERS[0],))
        with db.transaction() as tx, tx.savepoint():
            moved = payments.transition_group(
                tx, items.package_group(PACKAGE, len(MEMBERS)), "accepted", "sent",
                "beps_sent", LATER, known=MEMBERS)
        rows = _rows(db)
    finally:
        db.close()

    assert moved == MEMBERS[1:]
    assert len(_returning_updates(statements)) == 1
    assert rows[MEMBERS[0]][0] == "cancelled"
