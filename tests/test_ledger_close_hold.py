"""Ending a hold (settle, release) reads the hold first and looks its event up only when
the hold is no longer held: the common settlement runs no lookup of its event id, and
every replay and refusal is what it was when the event was looked up first."""

from __future__ import annotations

import pytest

from ledger import LedgerError
from ledger.testing import WORK_DATE, fresh_books, open_funded

PAYER_FEN = 100_000


@pytest.fixture
def books(tmp_path):
    db, led = fresh_books(f"sqlite:///{tmp_path / 'books.db'}", clearing_fen=10_000_000)
    payer = open_funded(db, led, 1, "张三", PAYER_FEN)
    yield db, led, payer
    db.close()


def _statements(db):
    seen: list[str] = []
    db._conn.set_trace_callback(seen.append)
    return seen


def test_a_settlement_of_a_held_hold_looks_up_no_event(books):
    """The event id is not read before posting: the entry's INSERT would find it taken."""
    db, led, payer = books
    with db.transaction() as tx:
        hold_id = led.hold(tx, "h1", payer, 30_000, WORK_DATE, "p1")
    seen = _statements(db)
    with db.transaction() as tx:
        led.settle(tx, "s1", hold_id, WORK_DATE)
    db._conn.set_trace_callback(None)

    lookups = [sql for sql in seen if "FROM ledger_entry WHERE event_id" in sql]
    assert lookups == []
    assert any(sql.startswith("INSERT INTO ledger_hold_end") for sql in seen)


def test_the_same_settlement_again_replays_it(books):
    """A settlement posted once and asked for again gives its entry, nothing posted."""
    db, led, payer = books
    with db.transaction() as tx:
        hold_id = led.hold(tx, "h1", payer, 30_000, WORK_DATE, "p1")
        first = led.settle(tx, "s1", hold_id, WORK_DATE)
        count = led.entry_count(tx)
        again = led.settle(tx, "s1", hold_id, WORK_DATE)

        assert again == first and led.entry_count(tx) == count
        assert led.clearing_balance(tx) == 10_000_000 - 30_000


def test_a_settlement_reversed_and_asked_again_replays_and_leaves_the_hold_held(books):
    """Once reversed the hold is held again; the settlement's own event id still gives
    the first entry (no second posting, no second end of the hold), and the hold can
    then be released."""
    db, led, payer = books
    with db.transaction() as tx:
        hold_id = led.hold(tx, "h1", payer, 30_000, WORK_DATE, "p1")
        settled = led.settle(tx, "s1", hold_id, WORK_DATE)
        led.reverse(tx, "rev1", settled, WORK_DATE, "teller01")
        count = led.entry_count(tx)
        balances = led.balance(tx, payer), led.clearing_balance(tx)

        assert led.settle(tx, "s1", hold_id, WORK_DATE) == settled
        assert led.entry_count(tx) == count
        assert (led.balance(tx, payer), led.clearing_balance(tx)) == balances
        led.release(tx, "r1", hold_id, WORK_DATE)
        assert led.balance(tx, payer) == PAYER_FEN
        assert led.trial_balance(tx).balanced


def test_refusals_are_those_of_the_event_looked_up_first(books):
    """An event id used for another posting is refused as such, whether the hold named
    is held, ended or no hold at all; a hold ended under another event, or no hold, is
    refused by its own code."""
    db, led, payer = books
    with db.transaction() as tx:
        hold_id = led.hold(tx, "h1", payer, 30_000, WORK_DATE, "p1")
        other = led.hold(tx, "h2", payer, 10_000, WORK_DATE, "p2")
        led.settle(tx, "s1", hold_id, WORK_DATE)
        count = led.entry_count(tx)
        codes = []
        for event_id, hold in (("s1", other), ("s1", 999_999), ("h2", hold_id),
                               ("r1", hold_id), ("r2", 999_999)):
            with pytest.raises(LedgerError) as refused, tx.savepoint():
                led.release(tx, event_id, hold, WORK_DATE)
            codes.append(refused.value.code)
        assert led.entry_count(tx) == count and led.trial_balance(tx).balanced

    assert codes == ["event_id_reused_for_other_posting", "event_id_reused_for_other_posting",
                     "event_id_reused_for_other_posting", "hold_already_ended",
                     "hold_not_found"]


def test_a_settlement_on_a_closed_day_still_replays(books):
    """A replay gives the first entry even once its day has closed."""
    db, led, payer = books
    with db.transaction() as tx:
        hold_id = led.hold(tx, "h1", payer, 30_000, WORK_DATE, "p1")
        first = led.settle(tx, "s1", hold_id, WORK_DATE)
        led.close_day(tx, WORK_DATE)
        assert led.settle(tx, "s1", hold_id, WORK_DATE) == first
