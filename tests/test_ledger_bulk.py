"""Holds taken many at once give what one-by-one holds give: the same outcomes, the same
balances, the same books (and what a payer cannot cover is refused exactly)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import LedgerError
from ledger.testing import WORK_DATE, fresh_books, open_funded


def _books(url: str, funds: list[int]):
    db, led = fresh_books(url, clearing_fen=10_000_000)
    payers = [open_funded(db, led, n + 1, f"客户{n}", fen) for n, fen in enumerate(funds)]
    return db, led, payers


def _outcome(result):
    return result.code if isinstance(result, LedgerError) else "held"


def _state(db, led, payers):
    with db.transaction() as tx:
        return ([led.balance(tx, p) for p in payers], led.trial_balance(tx).balanced,
                led.entry_count(tx))


@settings(max_examples=40, deadline=None)
@given(funds=st.lists(st.integers(0, 50_000), min_size=1, max_size=3),
       holds=st.lists(st.tuples(st.integers(0, 2), st.integers(1, 30_000)), min_size=1,
                      max_size=25))
def test_many_holds_at_once_equal_one_by_one(funds, holds):
    requests = [(f"h{n}", payer % len(funds), fen) for n, (payer, fen) in enumerate(holds)]
    db1, led1, payers1 = _books("sqlite:///:memory:", funds)
    with db1.transaction() as tx:
        many = led1.hold_many(tx, [(event, payers1[p], fen, WORK_DATE, event)
                                   for event, p, fen in requests])
    db2, led2, payers2 = _books("sqlite:///:memory:", funds)
    single = []
    with db2.transaction() as tx:
        for event, p, fen in requests:
            try:
                single.append(led2.hold(tx, event, payers2[p], fen, WORK_DATE, event))
            except LedgerError as error:
                single.append(error)
    assert [_outcome(r) for r in many] == [_outcome(r) for r in single]
    assert _state(db1, led1, payers1) == _state(db2, led2, payers2)
    assert _state(db1, led1, payers1)[1]  # balanced
    db1.close()
    db2.close()


def test_repeats_and_known_events_replay_and_bad_requests_are_refused_alone(database_url):
    db, led, payers = _books(database_url, [10_000, 10_000])
    with db.transaction() as tx:
        first = led.hold(tx, "known", payers[0], 1_000, WORK_DATE, "p0")
        out = led.hold_many(tx, [
            ("known", payers[0], 1_000, WORK_DATE, "p0"),       # already posted: replayed
            ("new", payers[1], 2_000, WORK_DATE, "p1"),
            ("new", payers[1], 2_000, WORK_DATE, "p1"),         # twice in one call
            ("zero", payers[1], 0, WORK_DATE, "p2"),            # not a positive amount
            ("other", led.clearing_account, 5, WORK_DATE, "p3"),  # not a customer account
            ("big", payers[0], 9_001, WORK_DATE, "p4"),         # more than is left
        ])
        balances = [led.balance(tx, p) for p in payers]
        balanced = led.trial_balance(tx).balanced
    assert out[0] == first and out[1] == out[2] and isinstance(out[1], int)
    assert [_outcome(r) for r in out[3:]] == ["amount_must_be_positive_fen",
                                              "account_not_found", "payer_funds_insufficient"]
    assert balances == [9_000, 8_000] and balanced
    db.close()


def test_a_closed_day_refuses_every_hold_of_the_call(database_url):
    db, led, payers = _books(database_url, [10_000])
    with db.transaction() as tx:
        led.close_day(tx, WORK_DATE)
    with db.transaction() as tx:
        out = led.hold_many(tx, [("a", payers[0], 100, WORK_DATE, "a")])
    assert _outcome(out[0]) == "work_date_closed"
    db.close()
