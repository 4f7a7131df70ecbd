"""Holds taken many at once give what one-by-one holds give: the same outcomes, the same
balances, the same books (and what a payer cannot cover is refused exactly)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import LedgerError
from ledger.holds import find_hold
from ledger.testing import WORK_DATE, customer_account, fresh_books, open_funded


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


NETTED_OUT = "4002"


def _entries(tx):
    """Every entry's content and lines, without its id: what two books can share."""
    lines = {}
    for entry_id, account_no, side, fen in tx.query(
            "SELECT entry_id, account_no, side, amount_fen FROM ledger_line "
            "ORDER BY entry_id, line_no", ()):
        lines.setdefault(entry_id, []).append((account_no, side, fen))
    return [(event_id, op, content, ref, depends_on is not None, lines[entry_id])
            for entry_id, event_id, op, content, ref, depends_on in tx.query(
                "SELECT entry_id, event_id, op, fingerprint, ref, depends_on "
                "FROM ledger_entry ORDER BY entry_id", ())]


def _held(db, led, payer, amounts):
    with db.transaction() as tx:
        return [led.hold(tx, f"p{n}:hold", payer, fen, WORK_DATE, f"p{n}")
                for n, fen in enumerate(amounts)]


def test_netting_many_holds_posts_what_netting_each_posts(database_url):
    """An entry of its own for each hold, naming it, as `net` one by one posts; each hold
    netted; the books balance and the netted obligations hold the sum."""
    amounts = [100, 2_500, 7, 40_000]
    books = []
    for bulk in (True, False):
        db, led, (payer,) = _books(database_url if bulk else "sqlite:///:memory:", [50_000])
        holds = _held(db, led, payer, amounts)
        nets = [(f"p{n}:net", hold_id) for n, hold_id in enumerate(holds)]
        with db.transaction() as tx:
            if bulk:
                ids = led.net_many(tx, nets, WORK_DATE)
            else:
                ids = [led.net(tx, event, hold_id, WORK_DATE) for event, hold_id in nets]
            books.append((
                _entries(tx), [find_hold(tx, h).state for h in holds],
                [tx.query_one("SELECT depends_on FROM ledger_entry WHERE entry_id = ?",
                              (entry_id,))[0] for entry_id in ids] == holds,
                led.balance(tx, led.internal_accounts[NETTED_OUT]),
                led.balance(tx, payer), led.trial_balance(tx).balanced))
        db.close()

    assert books[0] == books[1]
    assert books[0][1:] == (["netted"] * 4, True, sum(amounts), 50_000 - sum(amounts), True)


def test_netting_many_replays_what_was_netted_and_refuses_before_writing(database_url):
    """A hold netted before (one by one or in bulk) replays under its event id; a hold
    that has ended, or an event id used for another hold, refuses the whole call with
    nothing written; a netted hold's entry is reversed alone, the others stay netted."""
    db, led, (payer,) = _books(database_url, [50_000])
    h0, h1, h2, h3 = _held(db, led, payer, [100, 200, 300, 400])
    with db.transaction() as tx:
        first = led.net(tx, "p0:net", h0, WORK_DATE)
        out = led.net_many(tx, [("p0:net", h0), ("p1:net", h1), ("p2:net", h2)], WORK_DATE)
        entries = led.entry_count(tx)
        again = led.net_many(tx, [("p1:net", h1), ("p2:net", h2)], WORK_DATE)
        entries = (entries, led.entry_count(tx))
        led.release(tx, "p3:release", h3, WORK_DATE)
    refusals = []
    for nets in ([("p3:net", h3)], [("p1:net", h2)]):
        with db.transaction() as tx:
            before = (led.entry_count(tx), led.balance(tx, payer),
                      led.balance(tx, led.internal_accounts[NETTED_OUT]))
            with pytest.raises(LedgerError) as refused:
                led.net_many(tx, nets, WORK_DATE)
            refusals.append((refused.value.code, before == (
                led.entry_count(tx), led.balance(tx, payer),
                led.balance(tx, led.internal_accounts[NETTED_OUT]))))
    with db.transaction() as tx:
        led.reverse(tx, "undo-p1", out[1], WORK_DATE, "teller01")
        states = [find_hold(tx, h).state for h in (h0, h1, h2, h3)]
        netted = led.balance(tx, led.internal_accounts[NETTED_OUT])
        balanced = led.trial_balance(tx).balanced
    db.close()

    assert out[0] == first and again == out[1:] and entries[0] == entries[1]
    assert refusals == [("hold_already_ended", True),
                        ("event_id_reused_for_other_posting", True)]
    assert states == ["netted", "held", "netted", "released"]
    assert netted == 400 and balanced


def _credits_books(url):
    """Books with an open payee (two credits to it), a closed one, and the credits of a
    package: credited, to an unknown account, a closed one, a name that does not match,
    and one of our internal accounts."""
    db, led, (payee, other) = _books(url, [1_000, 500])
    closed = customer_account(9)
    with db.transaction() as tx:
        led.open_customer_account(tx, closed, "已销户", "personal", WORK_DATE)
        led.close_account(tx, closed, WORK_DATE)
        internal = led.internal_accounts[NETTED_OUT]
    credits = [("c0", payee, "客户0", 300), ("c1", customer_account(7), "无此人", 40),
               ("c2", other, "客户 1", 25), ("c3", closed, "已销户", 60),
               ("c4", payee, "别人", 70), ("c5", payee, "客户０", 9),
               ("c6", internal, "内部", 11)]
    return db, led, (payee, other), [(f"{e}:credit", account, name, fen, WORK_DATE, e)
                                      for e, account, name, fen in credits]


def test_crediting_many_posts_what_crediting_each_posts(database_url):
    """The same entries (their stored results included), suspense items and pending
    numbers, results and balances as `credit_incoming_netted` one by one; a second call
    posts nothing and returns the first results."""
    books = []
    for bulk in (True, False):
        db, led, payees, credits = _credits_books(
            database_url if bulk else "sqlite:///:memory:")
        with db.transaction() as tx:
            if bulk:
                results = led.credit_incoming_netted_many(tx, credits)
            else:
                results = [led.credit_incoming_netted(tx, *c) for c in credits]
            entries = led.entry_count(tx)
            again = led.credit_incoming_netted_many(tx, credits)
            books.append((
                _entries(tx), tx.query("SELECT result FROM ledger_entry ORDER BY entry_id",
                                       ()),
                tx.query("SELECT pending_no, amount_fen, account_no, payee_name, reason, ref,"
                         " state FROM ledger_suspense ORDER BY pending_no", ()),
                results, again == results, entries == led.entry_count(tx),
                [led.balance(tx, p) for p in payees],
                led.balance(tx, led.internal_accounts["2241"]),
                led.trial_balance(tx).balanced))
        db.close()

    assert books[0] == books[1]
    results = books[0][3]
    assert [r.kind for r in results] == ["credited", "suspense", "credited", "suspense",
                                         "suspense", "credited", "suspense"]
    assert [r.reason for r in results if r.kind == "suspense"] == [
        "account_not_found", "account_closed", "name_mismatch", "account_not_found"]
    assert [r.pending_no for r in results if r.kind == "suspense"] == [
        f"1{WORK_DATE:%m%d}000{n}" for n in range(1, 5)]
    assert books[0][4:] == (True, True, [1_000 + 309, 525], 40 + 60 + 70 + 11, True)


def test_crediting_many_replays_credits_posted_one_by_one(database_url):
    """A credit posted before under its event id (one by one) replays within a bulk
    call; the others post, each once; an event id used for another credit refuses the
    whole call with nothing written."""
    db, led, (payee, _), credits = _credits_books(database_url)
    with db.transaction() as tx:
        first = [led.credit_incoming_netted(tx, *c) for c in credits[:2]]
        out = led.credit_incoming_netted_many(tx, credits)
        count = led.entry_count(tx)
        assert out[:2] == first and count == 2 + len(credits) + 1  # the account deposit
    with db.transaction() as tx:
        before = (led.entry_count(tx), led.balance(tx, payee))
        with pytest.raises(LedgerError) as refused:
            led.credit_incoming_netted_many(tx, [(credits[0][0], payee, "客户0", 301,
                                                  WORK_DATE, "c0")] + credits[1:])
        assert refused.value.code == "event_id_reused_for_other_posting"
        assert before == (led.entry_count(tx), led.balance(tx, payee))


def test_releasing_many_holds_posts_what_releasing_each_posts(database_url):
    """An entry of its own for each hold, as `release` one by one posts, each payer
    given back its sum; a second call replays; an ended hold refuses it all, nothing
    written."""
    books = []
    for bulk in (True, False):
        db, led, payers = _books(database_url if bulk else "sqlite:///:memory:",
                                 [50_000, 9_000])
        with db.transaction() as tx:
            holds = [led.hold(tx, f"p{n}:hold", payer, fen, WORK_DATE, f"p{n}")
                     for n, (payer, fen) in enumerate(
                         [(payers[0], 100), (payers[1], 7), (payers[0], 2_500)])]
        ends = [(f"p{n}:release", hold_id) for n, hold_id in enumerate(holds)]
        with db.transaction() as tx:
            if bulk:
                ids = led.release_many(tx, ends, WORK_DATE)
                assert led.release_many(tx, ends, WORK_DATE) == ids
            else:
                ids = [led.release(tx, event, hold_id, WORK_DATE) for event, hold_id in ends]
            books.append((_entries(tx), [find_hold(tx, h).state for h in holds],
                          [led.balance(tx, p) for p in payers],
                          led.balance(tx, led.internal_accounts["4001"]),
                          led.trial_balance(tx).balanced))
        db.close()
    assert books[0] == books[1]
    assert books[0][1:] == (["released"] * 3, [50_000, 9_000], 0, True)


def test_netting_holds_together_posts_one_entry_for_their_sum(database_url):
    """One entry, Dr holds in transit and Cr netted obligations for the sum, naming the
    package; every hold netted by it; the payer's account as the holds left it; a
    replay gives the same entry; the books balance."""
    db, led, (payer,) = _books(database_url, [50_000])
    holds = _held(db, led, payer, [100, 2_500, 7, 40_000])
    with db.transaction() as tx:
        before = led.entry_count(tx)
        entry_id = led.net_together(tx, "pkg1:net", holds, WORK_DATE, "pkg1")
        again = led.net_together(tx, "pkg1:net", holds, WORK_DATE, "pkg1")
        lines = tx.query("SELECT account_no, side, amount_fen FROM ledger_line "
                         "WHERE entry_id = ? ORDER BY line_no", (entry_id,))
        ref = tx.query_one("SELECT ref FROM ledger_entry WHERE entry_id = ?", (entry_id,))[0]
        states = [find_hold(tx, h).state for h in holds]
        ends = {row[0] for row in tx.query(
            "SELECT entry_id FROM ledger_hold_end WHERE hold_id IN (?, ?, ?, ?)", holds)}
        result = (led.entry_count(tx) - before, led.balance(tx, payer),
                  led.balance(tx, led.internal_accounts[NETTED_OUT]),
                  led.trial_balance(tx).balanced)
    db.close()
    assert again == entry_id and ends == {entry_id} and ref == "pkg1"
    assert [(side, fen) for _, side, fen in lines] == [("D", 42_607), ("C", 42_607)]
    assert lines[1][0] == led.internal_accounts[NETTED_OUT]
    assert states == ["netted"] * 4
    assert result == (1, 50_000 - 42_607, 42_607, True)


def test_netting_together_refuses_before_writing_and_its_reversal_holds_them_again(
        database_url):
    """A hold already ended, a void hold, an id that is no hold, or the event id used for
    other holds refuse the whole call with nothing written; reversing the entry puts
    every one of its holds back on hold, to be netted again."""
    db, led, (payer,) = _books(database_url, [50_000])
    h0, h1, h2, h3 = _held(db, led, payer, [100, 200, 300, 400])
    with db.transaction() as tx:
        led.release(tx, "p3:release", h3, WORK_DATE)
        first = led.net_together(tx, "pkg1:net", [h0, h1], WORK_DATE, "pkg1")
    refusals = []
    for event, holds in (("pkg2:net", [h2, h3]), ("pkg2:net", [h2, h0]),
                         ("pkg2:net", [h2, 999_999]), ("pkg1:net", [h2])):
        with db.transaction() as tx:
            before = (led.entry_count(tx), led.balance(tx, led.internal_accounts[NETTED_OUT]))
            with pytest.raises(LedgerError) as refused:
                led.net_together(tx, event, holds, WORK_DATE, event[:4])
            refusals.append((refused.value.code, before == (
                led.entry_count(tx), led.balance(tx, led.internal_accounts[NETTED_OUT])),
                find_hold(tx, h2).state))
    with db.transaction() as tx:
        led.reverse(tx, "undo-pkg1", first, WORK_DATE, "teller01")
        reopened = [find_hold(tx, h).state for h in (h0, h1, h2, h3)]
        netted_after_reversal = led.balance(tx, led.internal_accounts[NETTED_OUT])
        again = led.net_together(tx, "pkg1:net:again", [h0, h1, h2], WORK_DATE, "pkg1")
        states = [find_hold(tx, h).state for h in (h0, h1, h2, h3)]
        netted = led.balance(tx, led.internal_accounts[NETTED_OUT])
        balanced = led.trial_balance(tx).balanced
    db.close()
    assert refusals == [("hold_already_ended", True, "held"),
                        ("hold_already_ended", True, "held"),
                        ("hold_not_found", True, "held"),
                        ("event_id_reused_for_other_posting", True, "held")]
    assert reopened == ["held", "held", "held", "released"] and netted_after_reversal == 0
    assert again != first and states == ["netted", "netted", "netted", "released"]
    assert netted == 600 and balanced
