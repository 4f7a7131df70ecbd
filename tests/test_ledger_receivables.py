"""Other receivables (1221, 其他应收款-待销账): money that left the clearing account
before the payer could be debited, booked under a pending write-off number and
collected from the payer later; the books balance after every step."""

from __future__ import annotations

import pytest

from ledger import LedgerError
from ledger.chart import RECEIVABLES
from ledger.testing import WORK_DATE, fresh_books, open_funded

CLEARING_FEN = 10_000_000
AMOUNT_FEN = 80_000


@pytest.fixture
def books(database_url):
    db, led = fresh_books(database_url, clearing_fen=CLEARING_FEN)
    payer = open_funded(db, led, 1, "张三", 50_000)
    yield db, led, payer
    db.close()


def test_a_receivable_follows_the_clearing_account_and_is_collected_later(books):
    """Booked: the clearing account falls by the amount and 1221 holds it, under a kind-2
    number; collected once the payer has the money: 1221 is empty, the payer debited."""
    db, led, payer = books
    with db.transaction() as tx:
        item = led.book_receivable(tx, "p1:receivable", payer, AMOUNT_FEN, WORK_DATE, "p1",
                                   "settled after the payment ended")
        booked = (led.clearing_balance(tx), led.balance(tx, led.internal_accounts[RECEIVABLES]),
                  led.trial_balance(tx).balanced)
        listed = led.open_receivables(tx, WORK_DATE)
        led.deposit(tx, "top-up", payer, 30_000, WORK_DATE)
        led.collect_receivable(tx, "p1:collect", item.pending_no, payer, WORK_DATE)
        collected = (led.balance(tx, payer), led.balance(tx, led.internal_accounts[RECEIVABLES]),
                     led.trial_balance(tx).balanced, led.open_receivables(tx, WORK_DATE))

    assert item.pending_no == "212070001" and item.state == "open"
    assert (item.account_no, item.ref, item.amount_fen) == (payer, "p1", AMOUNT_FEN)
    assert booked == (CLEARING_FEN - AMOUNT_FEN, AMOUNT_FEN, True)
    assert listed == [item]
    assert collected == (0, 0, True, [])


def test_booking_the_same_event_again_books_once(books):
    """The same event id gives the item it booked, and nothing more moves."""
    db, led, payer = books
    with db.transaction() as tx:
        first = led.book_receivable(tx, "p2:receivable", payer, AMOUNT_FEN, WORK_DATE, "p2",
                                    "why")
        entries = led.entry_count(tx)
        again = led.book_receivable(tx, "p2:receivable", payer, AMOUNT_FEN, WORK_DATE, "p2",
                                    "why")

        assert again == first
        assert led.entry_count(tx) == entries


@pytest.mark.parametrize("setup, code", [
    ("poor", "payer_funds_insufficient"),
    ("collected", "receivable_not_open"),
    ("unknown", "receivable_not_found"),
    ("internal", "account_not_found"),
])
def test_a_collection_is_refused_by_rule(books, setup, code):
    """The bank never advances money; an item is collected once, from a customer."""
    db, led, payer = books
    with db.transaction() as tx:
        item = led.book_receivable(tx, "p3:receivable", payer, AMOUNT_FEN, WORK_DATE, "p3",
                                   "why")
        account, number = payer, item.pending_no
        if setup == "collected":
            led.deposit(tx, "top-up", payer, AMOUNT_FEN, WORK_DATE)
            led.collect_receivable(tx, "first", number, payer, WORK_DATE)
        elif setup == "unknown":
            number = "212079999"
        elif setup == "internal":
            account = led.internal_accounts[RECEIVABLES]
        with pytest.raises(LedgerError) as refused:
            with tx.savepoint():
                led.collect_receivable(tx, "again", number, account, WORK_DATE)

        assert refused.value.code == code
        assert led.trial_balance(tx).balanced


def test_reversals_void_a_booking_and_reopen_a_collection(books):
    """Corrections run newest first: the collection reversed opens the item again, the
    booking reversed voids it and gives the clearing account its money back."""
    db, led, payer = books
    with db.transaction() as tx:
        item = led.book_receivable(tx, "p4:receivable", payer, AMOUNT_FEN, WORK_DATE, "p4",
                                   "why")
        led.deposit(tx, "top-up", payer, AMOUNT_FEN, WORK_DATE)
        collected = led.collect_receivable(tx, "p4:collect", item.pending_no, payer, WORK_DATE)
        with pytest.raises(LedgerError) as out_of_order:
            with tx.savepoint():
                led.reverse(tx, "undo-booking-first", item.entry_id, WORK_DATE, "sup1")
        led.reverse(tx, "undo-collect", collected, WORK_DATE, "sup1")
        reopened = led.open_receivables(tx, WORK_DATE)
        led.reverse(tx, "undo-booking", item.entry_id, WORK_DATE, "sup1")
        after = (led.open_receivables(tx, WORK_DATE), led.clearing_balance(tx),
                 led.trial_balance(tx).balanced)

    assert out_of_order.value.code == "later_postings_depend_on_entry"
    assert [i.pending_no for i in reopened] == [item.pending_no]
    assert after == ([], CLEARING_FEN, True)


def test_a_receivable_is_reversed_by_its_number_its_collection_first(books):
    """By the item's number alone: its collection reversed first (open again), then its
    booking (void); a void item has nothing left to reverse. Each state lists its own."""
    db, led, payer = books
    with db.transaction() as tx:
        item = led.book_receivable(tx, "p5:receivable", payer, AMOUNT_FEN, WORK_DATE, "p5",
                                   "why")
        led.deposit(tx, "top-up", payer, AMOUNT_FEN, WORK_DATE)
        led.collect_receivable(tx, "p5:collect", item.pending_no, payer, WORK_DATE)
        collected = [i.pending_no for i in led.receivables_in(tx, "collected", WORK_DATE)]
        _, reopened = led.reverse_receivable(tx, "p5:undo-1", item.pending_no, WORK_DATE,
                                             "sup1")
        payer_after_first = led.balance(tx, payer)
        _, voided = led.reverse_receivable(tx, "p5:undo-2", item.pending_no, WORK_DATE,
                                           "sup1")
        void = [i.pending_no for i in led.receivables_in(tx, "void", WORK_DATE)]
        with pytest.raises(LedgerError) as again:
            with tx.savepoint():
                led.reverse_receivable(tx, "p5:undo-3", item.pending_no, WORK_DATE, "sup1")
        after = (led.clearing_balance(tx), led.trial_balance(tx).balanced)

    assert collected == [item.pending_no]
    assert reopened.state == "open" and payer_after_first == 50_000 + AMOUNT_FEN
    assert voided.state == "void" and void == [item.pending_no]
    assert again.value.code == "receivable_already_void"
    assert after == (CLEARING_FEN, True)


def test_a_reversal_recorded_under_an_operators_old_name_shows_the_plain_one(books):
    """A receivable's reversal was recorded with the teller `operator:sup1` before the
    console named operators by their user name alone; its voucher shows `sup1`, as a
    reversal recorded now does (the entry itself is kept as written)."""
    from ledger.vouchers import render_text

    db, led, payer = books
    with db.transaction() as tx:
        item = led.book_receivable(tx, "p9:receivable", payer, AMOUNT_FEN, WORK_DATE, "p9",
                                   "why")
        old = led.reverse_receivable(tx, "p9:old", item.pending_no, WORK_DATE,
                                     "operator:sup1")[0]
        kept = tx.query_one("SELECT teller FROM ledger_entry WHERE entry_id = ?", (old,))[0]
        voucher = led.voucher(tx, old)

    assert kept == "operator:sup1"
    assert voucher.teller == "sup1" and "teller sup1" in render_text(voucher)
