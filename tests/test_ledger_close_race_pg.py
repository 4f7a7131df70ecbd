"""A posting that read its work date open while a close of that date ran on another
connection (PostgreSQL, where the close can commit between the posting's check and its
commit): the posting is refused at commit, nothing of it kept, and the next close finds
the books agreeing."""

from __future__ import annotations

import pytest

from ledger import connect
from ledger.errors import LedgerError
from ledger.fixtures import postgres_schema_or_skip
from ledger.postings import check_work_date_open
from ledger.testing import WORK_DATE, fresh_books, open_funded

pytestmark = pytest.mark.postgres

DAY = WORK_DATE.isoformat()


@pytest.fixture
def url():
    with postgres_schema_or_skip("close_race") as url:
        yield url


def test_posting_to_a_date_closed_meanwhile_is_refused_at_commit(url: str) -> None:
    db, led = fresh_books(url, clearing_fen=10**9)
    account = open_funded(db, led, 1, "甲", 100_000, work_date=WORK_DATE)
    other = connect(url)
    with pytest.raises(LedgerError) as refused:
        with db.transaction() as tx:
            check_work_date_open(tx, DAY)  # read open, as a posting does first
            with other.transaction() as closing:
                led.close_day(closing, DAY)
            led.deposit(tx, "late:deposit", account, 500, WORK_DATE)
    assert refused.value.problems[0].code == "work_date_closed"
    with db.transaction() as tx:
        assert led.balance(tx, account) == 100_000
        assert tx.query_one("SELECT COUNT(*) FROM ledger_entry WHERE event_id = ?",
                            ("late:deposit",))[0] == 0
    next_day = WORK_DATE.replace(day=WORK_DATE.day + 1)
    with db.transaction() as tx:
        led.deposit(tx, "next:deposit", account, 700, next_day)
    with other.transaction() as closing:
        assert led.close_day(closing, next_day).entries == 1
    other.close()
    db.close()


def test_a_close_in_the_same_transaction_is_not_its_own_race(url: str) -> None:
    db, led = fresh_books(url, clearing_fen=10**9)
    with db.transaction() as tx:
        led.close_day(tx, DAY)
    db.close()


def test_in_a_group_commit_only_the_piece_on_the_closed_date_is_refused(url: str) -> None:
    """Pieces of work share one transaction (gateway.store): the piece whose posting a close
    overtook is undone alone; a piece on the next date, and one on the closed date read
    after the close, are judged by the date closed now."""
    db, led = fresh_books(url, clearing_fen=10**9)
    account = open_funded(db, led, 1, "甲", 100_000, work_date=WORK_DATE)
    next_day = WORK_DATE.replace(day=WORK_DATE.day + 1)
    other = connect(url)
    outcomes = []
    with db.transaction() as tx:
        for event_id, amount_fen, day in (("late", 500, WORK_DATE), ("next", 700, next_day),
                                          ("later", 300, WORK_DATE)):
            try:
                with tx.savepoint():
                    check_work_date_open(tx, day.isoformat())
                    if event_id == "late":
                        with other.transaction() as closing:
                            led.close_day(closing, DAY)
                    led.deposit(tx, f"{event_id}:deposit", account, amount_fen, day)
                outcomes.append((event_id, "posted"))
            except LedgerError as exc:
                outcomes.append((event_id, exc.problems[0].code))
    assert outcomes == [("late", "work_date_closed"), ("next", "posted"),
                        ("later", "work_date_closed")]
    with db.transaction() as tx:
        assert led.balance(tx, account) == 100_700
    with other.transaction() as closing:
        assert led.close_day(closing, next_day).entries == 1
    other.close()
    db.close()
