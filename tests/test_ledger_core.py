"""The ledger's first interface: transactions, holds, settlement, incoming credits."""

from __future__ import annotations

import json

import pytest

from ledger import CreditResult, Ledger, LedgerError, connect
from ledger.testing import WORK_DATE, customer_account, fresh_books, open_funded

PAYER_FEN = 100_000


@pytest.fixture
def books(database_url):
    db, led = fresh_books(database_url, clearing_fen=10_000_000)
    payer = open_funded(db, led, 1, "张三", PAYER_FEN)
    payee = open_funded(db, led, 2, "某某贸易有限公司", 0, kind="corporate")
    yield db, led, payer, payee
    db.close()


def snapshot(db, led):
    with db.transaction() as tx:
        return led.entry_count(tx), led.digest(tx), led.trial_balance(tx).balanced


def test_file_database_uses_wal_and_full_sync(tmp_path):
    """A file database runs in WAL mode with synchronous=FULL and foreign keys on."""
    db = connect(f"sqlite:///{tmp_path / 'g.db'}")
    with db.transaction() as tx:
        pragmas = [tx.query_one(f"PRAGMA {name}")[0]
                   for name in ("journal_mode", "synchronous", "foreign_keys")]
    db.close()

    assert pragmas == ["wal", 2, 1]


def test_transaction_rolls_back_on_exception(books):
    """An exception inside the block undoes every posting of the transaction."""
    db, led, payer, _ = books
    with pytest.raises(RuntimeError), db.transaction() as tx:
        led.hold(tx, "h1", payer, 100, WORK_DATE, "p1")
        raise RuntimeError("caller failed after the hold")

    with db.transaction() as tx:
        assert led.balance(tx, payer) == PAYER_FEN


def test_savepoint_undoes_only_its_scope(books):
    """A failing item inside a savepoint rolls back alone; the rest commits."""
    db, led, payer, _ = books
    with db.transaction() as tx:
        led.hold(tx, "h1", payer, 100, WORK_DATE, "p1")
        with pytest.raises(LedgerError), tx.savepoint():
            led.hold(tx, "h2", payer, 200, WORK_DATE, "p2")
            led.hold(tx, "h3", payer, 10**9, WORK_DATE, "p3")

    with db.transaction() as tx:
        assert led.balance(tx, payer) == PAYER_FEN - 100


def test_install_is_idempotent(books):
    """Installing again changes neither the chart nor the books."""
    db, led, _, _ = books
    before = snapshot(db, led)
    with db.transaction() as tx:
        led.install(tx)

    assert snapshot(db, led) == before


def test_install_refuses_a_database_of_another_schema_version(books):
    """Books written by another schema version are refused rather than posted into."""
    db, led, _, _ = books
    with db.transaction() as tx:
        tx.execute("UPDATE ledger_meta SET value = '1' WHERE key = 'schema_version'")
    with db.transaction() as tx, pytest.raises(LedgerError) as refused:
        led.install(tx)

    assert refused.value.code == "ledger_schema_version_differs"


def test_hold_then_settle_moves_money_to_the_clearing_account(books):
    """A settled hold leaves the payer debited and the clearing account lower."""
    db, led, payer, _ = books
    with db.transaction() as tx:
        hold_id = led.hold(tx, "h1", payer, 30_000, WORK_DATE, "p1")
        led.settle(tx, "s1", hold_id, WORK_DATE)
        balances = led.balance(tx, payer), led.clearing_balance(tx)

    assert balances == (PAYER_FEN - 30_000, 10_000_000 - 30_000)
    assert snapshot(db, led)[2]


def test_release_gives_the_money_back(books):
    """A released hold restores the payer's balance."""
    db, led, payer, _ = books
    with db.transaction() as tx:
        hold_id = led.hold(tx, "h1", payer, 30_000, WORK_DATE, "p1")
        led.release(tx, "r1", hold_id, WORK_DATE)

        assert led.balance(tx, payer) == PAYER_FEN


@pytest.mark.parametrize("first, second", [
    ("settle", "release"), ("release", "settle"), ("settle", "settle"), ("net", "settle"),
])
def test_a_hold_ends_once(books, first, second):
    """After a hold is settled, released or netted, no other ending is accepted."""
    db, led, payer, _ = books
    with db.transaction() as tx:
        hold_id = led.hold(tx, "h1", payer, 30_000, WORK_DATE, "p1")
        getattr(led, first)(tx, "end1", hold_id, WORK_DATE)

        with pytest.raises(LedgerError) as refused:
            getattr(led, second)(tx, "end2", hold_id, WORK_DATE)

    assert refused.value.code == "hold_already_ended"


def test_a_hold_names_the_account_it_took_the_money_from_as_the_books_hold_it(books):
    """`named` gets the payer account's name and role from the hold's own statement,
    what `holder_names` reads, a hold replayed too (its line is applied, then undone
    when its event is found); a hold refused for funds gives nothing, and the caller
    reads the name itself."""
    db, led, payer, _ = books
    with db.transaction() as tx:
        named: dict = {}
        led.hold(tx, "h1", payer, 500, WORK_DATE, "p1", named)
        refused: dict = {}
        with pytest.raises(LedgerError):
            led.hold(tx, "h2", payer, PAYER_FEN * 2, WORK_DATE, "p2", refused)
        replayed: dict = {}
        led.hold(tx, "h1", payer, 500, WORK_DATE, "p1", replayed)
        held_by = led.holder_names(tx, [payer])

    assert named == replayed == {payer: ("张三", "customer")}
    assert named[payer][0] == held_by[payer]
    assert refused == {}


def test_posting_an_event_twice_has_one_effect(books):
    """The same event id with the same content returns the first result and posts nothing."""
    db, led, payer, payee = books
    with db.transaction() as tx:
        first = led.hold(tx, "h1", payer, 500, WORK_DATE, "p1")
        again = led.hold(tx, "h1", payer, 500, WORK_DATE, "p1")
        credit = led.credit_incoming(tx, "c1", payee, "某某贸易有限公司", 900, WORK_DATE, "m1")
        credit_again = led.credit_incoming(tx, "c1", payee, "某某贸易有限公司", 900,
                                           WORK_DATE, "m1")
        balances = led.balance(tx, payer), led.balance(tx, payee)

    assert (first, credit) == (again, credit_again)
    assert balances == (PAYER_FEN - 500, 900)


def test_reusing_an_event_id_for_other_content_is_refused(books):
    """An event id names one posting; other content under it is refused."""
    db, led, payer, _ = books
    with db.transaction() as tx:
        led.hold(tx, "h1", payer, 500, WORK_DATE, "p1")
        with pytest.raises(LedgerError) as refused:
            led.hold(tx, "h1", payer, 501, WORK_DATE, "p1")

    assert refused.value.code == "event_id_reused_for_other_posting"


@pytest.mark.parametrize("check_only", [False, True])
def test_hold_refusals(books, check_only):
    """Each broken rule refuses the hold with its code and changes nothing; check_hold,
    which only reads, refuses each the same way, with the same words."""
    db, led, payer, _ = books
    frozen = open_funded(db, led, 3, "李四", PAYER_FEN)
    closed = open_funded(db, led, 4, "王五", 0)
    with db.transaction() as tx:
        led.freeze(tx, frozen, WORK_DATE)
        led.close_account(tx, closed, WORK_DATE)
    cases = [
        (payer, PAYER_FEN + 1, "payer_funds_insufficient"),
        (customer_account(99), 100, "account_not_found"),
        (led.clearing_account, 100, "account_not_found"),
        (frozen, 100, "account_frozen"),
        (closed, 100, "account_closed"),
        (payer, 0, "amount_must_be_positive_fen"),
        (payer, 1.5, "amount_must_be_positive_fen"),
        (payer, True, "amount_must_be_positive_fen"),
    ]
    before = snapshot(db, led)
    codes, said = [], []
    for account_no, amount_fen, _ in cases:
        with db.transaction() as tx:
            with pytest.raises(LedgerError) as refused:
                if check_only:
                    led.check_hold(tx, account_no, amount_fen, WORK_DATE)
                else:
                    led.hold(tx, f"h-{account_no}-{amount_fen}", account_no, amount_fen,
                             WORK_DATE, "p")
            codes.append(refused.value.code)
            said.append(refused.value.to_dict())
    with db.transaction() as tx:
        led.check_hold(tx, payer, PAYER_FEN, WORK_DATE)  # the whole balance is taken

    assert codes == [code for _, _, code in cases]
    assert f"at most the available balance of {PAYER_FEN} fen (the account's balance less " \
        "its funds on hold)" in json.dumps(said[0], ensure_ascii=False)
    assert snapshot(db, led) == before


@pytest.mark.parametrize("event_id", ["", None, 7, "x" * 201])
def test_event_ids_are_short_non_empty_strings(books, event_id):
    """An event id that is not a non-empty string of at most 200 characters is refused."""
    db, led, payer, _ = books
    with db.transaction() as tx, pytest.raises(LedgerError) as refused:
        led.hold(tx, event_id, payer, 100, WORK_DATE, "p1")

    assert refused.value.code == "event_id_invalid"


def test_a_refused_hold_can_be_retried_under_the_same_event_id(books):
    """A refusal records nothing, so the event may be posted once the money is there."""
    db, led, payer, _ = books
    with db.transaction() as tx:
        with pytest.raises(LedgerError):
            led.hold(tx, "h1", payer, PAYER_FEN * 2, WORK_DATE, "p1")
        led.deposit(tx, "d-more", payer, PAYER_FEN, WORK_DATE)
        led.hold(tx, "h1", payer, PAYER_FEN * 2, WORK_DATE, "p1")

        assert led.balance(tx, payer) == 0


@pytest.mark.parametrize("account, name, expected", [
    ("payee", "某某贸易有限公司", CreditResult("credited", account_no="payee")),
    ("payee", " 某某贸易 有限公司 ", CreditResult("credited", account_no="payee")),
    ("payee", "另一家公司", CreditResult("suspense", pending_no="112070001",
                                     reason="name_mismatch")),
    ("unknown", "某某贸易有限公司", CreditResult("suspense", pending_no="112070001",
                                          reason="account_not_found")),
    ("closed", "王五", CreditResult("suspense", pending_no="112070001",
                                  reason="account_closed")),
    ("clearing", "x", CreditResult("suspense", pending_no="112070001",
                                   reason="account_not_found")),
])
def test_credit_incoming_routes_by_payee(books, account, name, expected):
    """Money for a known, open account with the holder's name is credited; else suspense."""
    db, led, _, payee = books
    closed = open_funded(db, led, 4, "王五", 0)
    numbers = {"payee": payee, "unknown": customer_account(99), "closed": closed,
               "clearing": led.clearing_account}
    with db.transaction() as tx:
        led.close_account(tx, closed, WORK_DATE)
        result = led.credit_incoming(tx, "c1", numbers[account], name, 12_345, WORK_DATE,
                                     "msg-1")
    if expected.account_no:
        expected = CreditResult("credited", account_no=numbers[account])

    assert (result.kind, result.account_no, result.pending_no, result.reason) == (
        expected.kind, expected.account_no, expected.pending_no, expected.reason)
    assert snapshot(db, led)[2]


@pytest.mark.parametrize("account, name, reason", [
    ("payee", "某某贸易有限公司", "branch_mismatch"),
    ("payee", "另一家公司", "name_mismatch"),
    ("unknown", "某某贸易有限公司", "account_not_found"),
])
def test_a_credit_naming_another_branch_is_parked_with_the_first_reason(books, account,
                                                                        name, reason):
    """A credit whose payee bank does not keep the account goes to suspense even for the
    holder's right name; a problem with the account or its holder is the reason told."""
    db, led, _, payee = books
    account_no = payee if account == "payee" else customer_account(99)
    with db.transaction() as tx:
        before = led.balance(tx, payee)
        result = led.credit_incoming(tx, "c1", account_no, name, 12_345, WORK_DATE,
                                     "msg-1", other_branch=True)

        assert (result.kind, result.pending_no, result.reason) == (
            "suspense", "112070001", reason)
        assert led.balance(tx, payee) == before
    assert snapshot(db, led)[2]


def test_the_branch_checked_is_part_of_a_credit_s_event(books):
    """The same credit under its event id replays its result; under the same id but
    naming another branch it is another posting, refused."""
    db, led, _, payee = books
    with db.transaction() as tx:
        first = led.credit_incoming(tx, "c1", payee, "某某贸易有限公司", 100, WORK_DATE,
                                    "msg-1", other_branch=True)
        again = led.credit_incoming(tx, "c1", payee, "某某贸易有限公司", 100, WORK_DATE,
                                    "msg-1", other_branch=True)
        with pytest.raises(LedgerError) as refused:
            led.credit_incoming(tx, "c1", payee, "某某贸易有限公司", 100, WORK_DATE,
                                "msg-1")

    assert again == first and first.reason == "branch_mismatch"
    assert refused.value.code == "event_id_reused_for_other_posting"


def test_pending_numbers_run_per_day(books):
    """Suspense numbers are kind 1, MMDD of the work date and a daily sequence from 0001."""
    db, led, _, _ = books
    unknown = customer_account(99)
    days = ["2026-12-07", "2026-12-07", "2026-12-08"]
    with db.transaction() as tx:
        numbers = [led.credit_incoming(tx, f"c{i}", unknown, "x", 100, day, f"m{i}").pending_no
                   for i, day in enumerate(days)]

    assert numbers == ["112070001", "112070002", "112080001"]


def test_digest_is_the_same_for_the_same_events(tmp_path):
    """Two books that posted the same events in the same order have the same digest."""
    digests = []
    for run in range(2):
        db, led = fresh_books(f"sqlite:///{tmp_path / f'run{run}.db'}", clearing_fen=1_000_000)
        payer = open_funded(db, led, 1, "张三", 50_000)
        with db.transaction() as tx:
            hold_id = led.hold(tx, "h1", payer, 700, WORK_DATE, "p1")
            led.settle(tx, "s1", hold_id, WORK_DATE)
            digests.append((led.entry_count(tx), led.digest(tx)))
        db.close()

    assert digests[0] == digests[1]
    assert digests[0][1].startswith("sha256:") and len(digests[0][1]) == 71


def test_ledger_error_is_a_paygate_error_with_status_422(books):
    """A ledger refusal carries the product's error shape and HTTP status 422."""
    db, led, payer, _ = books
    with db.transaction() as tx, pytest.raises(LedgerError) as refused:
        led.hold(tx, "h1", payer, PAYER_FEN + 1, WORK_DATE, "p1")

    assert refused.value.status == 422
    assert refused.value.to_dict()["errors"][0]["code"] == "payer_funds_insufficient"


def test_ledger_accepts_the_documented_constructor():
    """Ledger() and Ledger(db_tx_factory_free=True) build the same stateless service."""
    assert Ledger(db_tx_factory_free=True).clearing_account == Ledger().clearing_account
