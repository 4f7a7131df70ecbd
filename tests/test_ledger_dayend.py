"""Day end, statements, reports, vouchers, fees and backup/restore."""

from __future__ import annotations

import csv

import pytest

from ledger import LedgerError, backup
from ledger.fees import Band, Tariff, default_tariff
from ledger.testing import WORK_DATE, fresh_books, open_funded

NEXT_DAY = "2026-12-08"


@pytest.fixture
def books(database_url):
    db, led = fresh_books(database_url, clearing_fen=10_000_000)
    payer = open_funded(db, led, 1, "张三", 1_023_450)
    payee = open_funded(db, led, 2, "某某贸易有限公司", 0, kind="corporate")
    yield db, led, payer, payee
    db.close()


def test_closed_day_takes_no_postings(books):
    """After close_day that date, and every earlier one, refuses postings."""
    db, led, payer, _ = books
    with db.transaction() as tx:
        closed = led.close_day(tx, WORK_DATE)
    codes = []
    for day in (WORK_DATE, "2026-12-01"):
        with db.transaction() as tx, pytest.raises(LedgerError) as refused:
            led.hold(tx, f"h-{day}", payer, 100, day, "p")
        codes.append(refused.value.code)
    with db.transaction() as tx:
        led.hold(tx, "h-next", payer, 100, NEXT_DAY, "p")

    assert closed.trial_balance.balanced and closed.entries == 2
    assert codes == ["work_date_closed", "work_date_closed"]


def test_a_day_closes_once(books):
    """Closing a closed date is refused."""
    db, led, _, _ = books
    with db.transaction() as tx:
        led.close_day(tx, WORK_DATE)
        with pytest.raises(LedgerError) as refused:
            led.close_day(tx, WORK_DATE)

    assert refused.value.code == "work_date_closed"


def test_close_day_refuses_books_whose_detail_disagrees(books):
    """A running balance that differs from its lines stops the day from closing."""
    db, led, payer, _ = books
    with db.transaction() as tx:
        tx.execute("UPDATE ledger_account SET balance_fen = balance_fen + 1"
                   " WHERE account_no = ?", (payer,))
        with pytest.raises(LedgerError) as refused:
            led.close_day(tx, WORK_DATE)

    assert refused.value.code == "detail_ledgers_disagree"


def test_statement_runs_balances_over_a_date_range(books):
    """A statement starts from the balance before the range and runs line by line."""
    db, led, payer, _ = books
    with db.transaction() as tx:
        hold_id = led.hold(tx, "h1", payer, 23_450, NEXT_DAY, "p1")
        led.release(tx, "r1", hold_id, NEXT_DAY)
        led.hold(tx, "h2", payer, 1_000, "2026-12-09", "p2")
        statement = led.statement(tx, payer, NEXT_DAY, NEXT_DAY)

    assert statement.opening_fen == 1_023_450
    assert [(line.side, line.amount_fen, line.balance_fen) for line in statement.lines] == [
        ("D", 23_450, 1_000_000), ("C", 23_450, 1_023_450)]
    assert statement.closing_fen == 1_023_450
    assert statement.lines[0].voucher_no.startswith("30")


def test_day_reports_are_written(books, tmp_path):
    """The daily statement (CSV) and the subject day sheets (text) show the day's turnover."""
    db, led, payer, _ = books
    with db.transaction() as tx:
        hold_id = led.hold(tx, "h1", payer, 23_450, NEXT_DAY, "p1")
        led.settle(tx, "s1", hold_id, NEXT_DAY)
        paths = led.write_day_reports(tx, NEXT_DAY, tmp_path)
    rows = list(csv.reader(paths[0].open(encoding="utf-8")))
    by_subject = {row[0]: row for row in rows[2:] if row[0].isascii() and row[0][:1] == "2"}
    sheets = paths[1].read_text(encoding="utf-8")

    assert by_subject["2001"][3:] == ["10234.50", "234.50", "0.00", "10000.00"]
    assert rows[-1] == ["balanced", "true"]
    assert "2001 个人活期存款" in sheets and "debit vouchers 1, 234.50" in sheets


def test_voucher_shows_parties_and_amount_in_capitals(books):
    """A voucher prints both parties, the grouped amount and the amount in capitals."""
    db, led, payer, payee = books
    with db.transaction() as tx:
        hold_id = led.hold(tx, "h1", payer, 1_023_450, WORK_DATE, "p1<script>")
        by_id = led.voucher(tx, hold_id)
        by_number = led.voucher(tx, by_id.voucher_no)
    from ledger.vouchers import render_html, render_text

    text, html = render_text(by_id), render_html(by_id)

    assert by_id == by_number and by_id.voucher_no == f"30{hold_id:010d}"
    assert "10,234.50" in text and "人民币壹万零贰佰叁拾肆元伍角整" in text
    assert payer in text and "张三" in text
    assert "<script>" not in html and "&lt;script&gt;" in html


@pytest.mark.parametrize("number", [0, "300000000000", "99999", 10**9])
def test_unknown_vouchers_are_refused(books, number):
    """Asking for a voucher that does not exist names the rule."""
    db, led, _, _ = books
    with db.transaction() as tx, pytest.raises(LedgerError) as refused:
        led.voucher(tx, number)

    assert refused.value.code == "voucher_not_found"


@pytest.mark.parametrize("business, amount_fen, fee_fen", [
    ("hvps", 1, 500),
    ("hvps", 1_000_000, 500),
    ("hvps", 1_000_001, 1_000),
    ("hvps", 100_000_000, 2_000),
    ("hvps", 500_000_000, 10_000),
    ("hvps", 5_000_000_000, 20_000),
    ("beps", 200_000, 0),
    ("beps", 200_001, 200),
])
def test_default_tariff(business, amount_fen, fee_fen):
    """The default tariff charges by amount band, with a capped rate above one million."""
    assert default_tariff().fee_fen(business, amount_fen) == fee_fen


def test_rated_fees_round_half_up():
    """A computed fee is rounded half up to the fen."""
    tariff = Tariff({"x": (Band(upper_fen=None, rate_ppm=5_000),)})

    assert [tariff.fee_fen("x", amount) for amount in (100, 300, 299)] == [1, 2, 1]


def test_unknown_fee_business_is_refused():
    """A fee for a business the tariff does not know is refused by name."""
    with pytest.raises(LedgerError) as refused:
        default_tariff().fee_fen("cheque", 100)

    assert refused.value.code == "fee_business_unknown"


def test_backup_and_restore_keep_the_books(tmp_path):
    """A backup taken while the database is open restores to the same books."""
    db, led = fresh_books(f"sqlite:///{tmp_path / 'live.db'}", clearing_fen=1_000_000)
    payer = open_funded(db, led, 1, "张三", 50_000)
    with db.transaction() as tx:
        led.hold(tx, "h1", payer, 700, WORK_DATE, "p1")
        live = (led.entry_count(tx), led.digest(tx))

    copied = backup.backup(db, tmp_path / "copy.db")
    with db.transaction() as tx:
        led.hold(tx, "h2", payer, 800, WORK_DATE, "p2")
    db.close()
    restored = backup.restore(tmp_path / "copy.db", tmp_path / "restored.db")

    assert (copied.entries, copied.digest) == live and copied.balanced
    assert restored == copied


def test_backup_never_overwrites(tmp_path):
    """Backing up onto an existing file is refused."""
    db, _ = fresh_books(f"sqlite:///{tmp_path / 'live.db'}")
    (tmp_path / "copy.db").write_text("keep me")
    with pytest.raises(FileExistsError):
        backup.backup(db, tmp_path / "copy.db")
    db.close()

    assert (tmp_path / "copy.db").read_text() == "keep me"
