"""BEPS netting, suspense, corrections and account states: the books balance after each step."""

from __future__ import annotations

import pytest

from ledger import LedgerError
from ledger.chart import BEPS_NETTED_IN, BEPS_NETTED_OUT
from ledger.testing import WORK_DATE, customer_account, fresh_books, open_funded

CLEARING_FEN = 10_000_000
NEXT_DAY = "2026-12-08"


@pytest.fixture
def books(database_url):
    db, led = fresh_books(database_url, clearing_fen=CLEARING_FEN)
    payer = open_funded(db, led, 1, "张三", 100_000)
    payee = open_funded(db, led, 2, "李四", 0)
    yield db, led, payer, payee
    db.close()


def balanced(led, tx):
    return led.trial_balance(tx).balanced


def test_beps_round_trip_balances_after_every_step(books):
    """Hold, net, incoming netted credit and round settlement each leave balanced books."""
    db, led, payer, payee = books
    internal = led.internal_accounts
    steps = []
    with db.transaction() as tx:
        hold_id = led.hold(tx, "h1", payer, 30_000, WORK_DATE, "p1")
        steps.append(balanced(led, tx))
        led.net(tx, "n1", hold_id, WORK_DATE)
        steps.append(balanced(led, tx))
        led.credit_incoming_netted(tx, "c1", payee, "李四", 12_000, WORK_DATE, "m1")
        steps.append(balanced(led, tx))
        led.settle_net(tx, "round-01", "20261207-01", 30_000, 12_000, WORK_DATE)
        steps.append(balanced(led, tx))
        balances = [led.balance(tx, a) for a in (payer, payee, led.clearing_account,
                                                 internal[BEPS_NETTED_OUT],
                                                 internal[BEPS_NETTED_IN])]

    assert steps == [True] * 4
    assert balances == [70_000, 12_000, CLEARING_FEN - 30_000 + 12_000, 0, 0]


def test_settle_net_with_nothing_to_settle_posts_nothing(books):
    """A round with zero on both sides makes no entry."""
    db, led, _, _ = books
    with db.transaction() as tx:
        before = led.entry_count(tx)

        assert led.settle_net(tx, "round-00", "20261207-00", 0, 0, WORK_DATE) == 0
        assert led.entry_count(tx) == before


@pytest.mark.parametrize("debit_fen, credit_fen", [(-1, 0), (0, -5), (1.0, 0)])
def test_settle_net_refuses_negative_or_fractional_amounts(books, debit_fen, credit_fen):
    """Round totals are non-negative integers of fen."""
    db, led, _, _ = books
    with db.transaction() as tx, pytest.raises(LedgerError) as refused:
        led.settle_net(tx, "round-x", "r", debit_fen, credit_fen, WORK_DATE)

    assert refused.value.code == "amount_must_be_zero_or_positive_fen"


def test_suspense_cleared_to_the_right_account(books):
    """Money parked for a name mismatch is later posted to the account it belongs to."""
    db, led, _, payee = books
    with db.transaction() as tx:
        parked = led.credit_incoming(tx, "c1", payee, "王五", 5_000, WORK_DATE, "m1")
        open_before = [item.pending_no for item in led.open_suspense(tx, NEXT_DAY)]
        led.clear_suspense(tx, "clear1", parked.pending_no, payee, WORK_DATE)

        assert open_before == [parked.pending_no]
        assert led.open_suspense(tx, NEXT_DAY) == []
        assert led.balance(tx, payee) == 5_000 and balanced(led, tx)


def test_suspense_returned_goes_back_out_through_clearing(books):
    """A returned suspense item leaves through the clearing account."""
    db, led, _, _ = books
    with db.transaction() as tx:
        parked = led.credit_incoming(tx, "c1", customer_account(99), "x", 5_000, WORK_DATE,
                                     "m1")
        item = led.return_suspense(tx, "ret1", parked.pending_no, WORK_DATE)

        assert (item.state, item.amount_fen, item.ref) == ("returned", 5_000, "m1")
        assert led.clearing_balance(tx) == CLEARING_FEN and balanced(led, tx)


def test_open_suspense_reports_age(books):
    """Open items carry their age in days on the date asked about."""
    db, led, _, _ = books
    with db.transaction() as tx:
        led.credit_incoming(tx, "c1", customer_account(99), "x", 5_000, WORK_DATE, "m1")
        items = led.open_suspense(tx, "2026-12-10")

    assert [(item.reason, item.age_days) for item in items] == [("account_not_found", 3)]


@pytest.mark.parametrize("second", ["clear", "return"])
def test_a_suspense_item_ends_once(books, second):
    """A cleared item can be neither cleared nor returned again."""
    db, led, _, payee = books
    with db.transaction() as tx:
        parked = led.credit_incoming(tx, "c1", payee, "王五", 5_000, WORK_DATE, "m1")
        led.clear_suspense(tx, "clear1", parked.pending_no, payee, WORK_DATE)
        with pytest.raises(LedgerError) as refused:
            if second == "clear":
                led.clear_suspense(tx, "clear2", parked.pending_no, payee, WORK_DATE)
            else:
                led.return_suspense(tx, "ret2", parked.pending_no, WORK_DATE)

    assert refused.value.code == "suspense_item_not_open"


def test_reversal_runs_newest_first(books):
    """A suspense credit later cleared is reversed only after its clearing is."""
    db, led, _, payee = books
    with db.transaction() as tx:
        parked = led.credit_incoming(tx, "c1", payee, "王五", 5_000, WORK_DATE, "m1")
        cleared = led.clear_suspense(tx, "clear1", parked.pending_no, payee, WORK_DATE)
        with pytest.raises(LedgerError) as refused:
            led.reverse(tx, "rev1", parked.entry_id, WORK_DATE, "teller01")
        led.reverse(tx, "rev2", cleared, WORK_DATE, "teller01")
        reopened = [item.pending_no for item in led.open_suspense(tx, WORK_DATE)]
        led.reverse(tx, "rev3", parked.entry_id, WORK_DATE, "teller01")

        assert refused.value.code == "later_postings_depend_on_entry"
        assert reopened == [parked.pending_no]
        assert led.open_suspense(tx, WORK_DATE) == []
        assert led.balance(tx, payee) == 0 and led.clearing_balance(tx) == CLEARING_FEN


def test_reversing_a_settlement_puts_the_hold_back(books):
    """A reversed settlement leaves the hold held, so it can be released instead."""
    db, led, payer, _ = books
    with db.transaction() as tx:
        hold_id = led.hold(tx, "h1", payer, 30_000, WORK_DATE, "p1")
        settled = led.settle(tx, "s1", hold_id, WORK_DATE)
        led.reverse(tx, "rev1", settled, WORK_DATE, "teller01")
        led.release(tx, "r1", hold_id, WORK_DATE)

        assert led.balance(tx, payer) == 100_000 and balanced(led, tx)


def test_reversal_refusals(books):
    """Each broken correction rule has its own code."""
    db, led, payer, _ = books
    with db.transaction() as tx:
        deposit_id = led.deposit(tx, "d1", payer, 100, WORK_DATE)
        later = led.deposit(tx, "d2", payer, 100, NEXT_DAY)
        reversal = led.reverse(tx, "rev1", deposit_id, WORK_DATE, "teller01")
        cases = [
            (("rev2", deposit_id, WORK_DATE, "teller01"), "entry_already_reversed"),
            (("rev3", reversal, WORK_DATE, "teller01"), "entry_is_a_reversal"),
            (("rev4", later, WORK_DATE, "teller01"), "reversal_only_on_the_same_day"),
            (("rev5", 10**9, WORK_DATE, "teller01"), "entry_not_found"),
            (("rev6", later, NEXT_DAY, ""), "reversal_needs_an_operator"),
        ]
        codes = []
        for args, _ in cases:
            with pytest.raises(LedgerError) as refused:
                led.reverse(tx, *args)
            codes.append(refused.value.code)

    assert codes == [code for _, code in cases]


def test_reversal_cannot_overdraw_an_account(books):
    """Reversing a deposit already spent is refused by the balance rule."""
    db, led, payer, _ = books
    with db.transaction() as tx:
        deposit_id = led.deposit(tx, "d1", payer, 5_000, WORK_DATE)
        led.hold(tx, "h1", payer, 105_000, WORK_DATE, "p1")
        with pytest.raises(LedgerError) as refused:
            led.reverse(tx, "rev1", deposit_id, WORK_DATE, "teller01")

    assert refused.value.code == "account_balance_insufficient"


def test_freeze_lapses_after_six_months(books):
    """A freeze refuses debits through its last day and lapses by itself the day after."""
    db, led, payer, _ = books
    with db.transaction() as tx:
        last_day = led.freeze(tx, payer, WORK_DATE)
        with pytest.raises(LedgerError) as refused:
            led.hold(tx, "h1", payer, 100, last_day, "p1")
        led.hold(tx, "h2", payer, 100, "2027-06-07", "p2")

        assert last_day == "2027-06-06"
        assert refused.value.code == "account_frozen"
        assert led.account(tx, payer, "2027-06-07").status == "open"


def test_a_frozen_account_still_receives(books):
    """A freeze stops money going out, not coming in."""
    db, led, payer, _ = books
    with db.transaction() as tx:
        led.freeze(tx, payer, WORK_DATE)
        result = led.credit_incoming(tx, "c1", payer, "张三", 700, WORK_DATE, "m1")

        assert result.kind == "credited" and led.balance(tx, payer) == 100_700


@pytest.mark.parametrize("action, code", [
    ("close_with_balance", "account_balance_not_zero"),
    ("close_with_hold", "account_has_open_holds"),
    ("open_again_other_name", "account_already_exists"),
    ("open_bad_check_digit", "account_number_invalid"),
    ("open_wrong_kind", "account_kind_mismatch"),
    ("unfreeze_open", "account_not_frozen"),
])
def test_account_state_refusals(books, action, code):
    """Opening, closing and unfreezing keep to their rules."""
    db, led, payer, _ = books
    bad_digit = payer[:-1] + str((int(payer[-1]) + 1) % 10)
    actions = {
        "close_with_balance": lambda tx: led.close_account(tx, payer, WORK_DATE),
        "close_with_hold": lambda tx: (
            led.hold(tx, "h1", payer, 100_000, WORK_DATE, "p"),
            led.close_account(tx, payer, WORK_DATE)),
        "open_again_other_name": lambda tx: led.open_customer_account(
            tx, payer, "别人", "personal", WORK_DATE),
        "open_bad_check_digit": lambda tx: led.open_customer_account(
            tx, bad_digit, "某人", "personal", WORK_DATE),
        "open_wrong_kind": lambda tx: led.open_customer_account(
            tx, customer_account(7), "某公司", "corporate", WORK_DATE),
        "unfreeze_open": lambda tx: led.unfreeze(tx, payer, WORK_DATE),
    }
    with db.transaction() as tx, pytest.raises(LedgerError) as refused:
        actions[action](tx)

    assert refused.value.code == code


def test_fee_follows_the_tariff_to_fee_income(books):
    """A fee is charged to the customer by the tariff band and credited to fee income."""
    db, led, payer, _ = books
    with db.transaction() as tx:
        fee_fen = led.fee_for("hvps", 50_000)
        led.charge_fee(tx, "fee1", payer, "hvps", 50_000, WORK_DATE, "p1")
        income_fen = led.trial_balance(tx).income_fen

    assert fee_fen == 500
    assert income_fen == 500


def test_a_customer_balance_counts_only_the_holds_still_held(books):
    """Ledger balance = available + held; a hold released, netted, settled or reversed
    no longer counts, and a settlement reversed counts its hold again."""
    db, led, payer, _ = books
    seen = []

    def look(tx):
        b = led.customer_balance(tx, payer, WORK_DATE)
        seen.append((b.ledger_balance_fen, b.held_fen, b.available_fen, b.holds))

    with db.transaction() as tx:
        look(tx)
        held = [led.hold(tx, f"h{n}", payer, fen, WORK_DATE, f"p{n}")
                for n, fen in enumerate((10_000, 2_000, 300, 40))]
        look(tx)
        led.release(tx, "r0", held[0], WORK_DATE)
        led.net(tx, "n1", held[1], WORK_DATE)
        settled = led.settle(tx, "s2", held[2], WORK_DATE)
        led.reverse(tx, "v3", held[3], WORK_DATE, "teller01")
        look(tx)
        led.reverse(tx, "v2", settled, WORK_DATE, "teller01")
        look(tx)

    assert seen == [(100_000, 0, 100_000, 0), (100_000, 12_340, 87_660, 4),
                    (97_700, 0, 97_700, 0), (98_000, 300, 97_700, 1)]


def test_a_customer_balance_is_of_a_customer_account_only(books):
    db, led, _, _ = books
    with db.transaction() as tx:
        with pytest.raises(LedgerError) as internal:
            led.customer_balance(tx, led.clearing_account, WORK_DATE)
        with pytest.raises(LedgerError) as unknown:
            led.customer_balance(tx, customer_account(99), WORK_DATE)

    assert (internal.value.code, unknown.value.code) == ("account_not_found",
                                                         "account_not_found")
