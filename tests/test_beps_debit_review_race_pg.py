"""The last two debits of a collector's beps.127 that the screening held, decided at once
by two gateway processes on one PostgreSQL database, leave the package `answered`.

Each decision locks only its own debit's payment, then counts the package's debits still
waiting for operators: without the package's row locked before that count, each would
see the other's debit still waiting (not yet committed) and both would write
`partly_answered`, which nothing would ever change again. One decision here holds its
transaction open while the other runs into it; once the first commits, the second counts
what it left. A real gateway (embedded Redis) on a PostgreSQL schema of its own."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest

import ledger
from gateway import store
from gateway.beps import debit_review, debits_in
from gateway.ops.testing import serving
from ledger.fixtures import postgres_schema_or_skip
from ledger.testing import customer_account
from tests.race_support import Other
from tests.test_beps_debit_screening import AGREEMENT, LISTED, Rig

pytestmark = pytest.mark.postgres

SECOND_PAYER = customer_account(6, "personal")
SECOND_PAYER_NAME = "第二付款人"
WHO = {"request": 0, "by": "sup1"}


@pytest.fixture
def rig(tmp_path: Any) -> Iterator[Rig]:
    with postgres_schema_or_skip("debit_review_race") as url, \
            serving(tmp_path, {"database_url": url}) as (loop, ops_rig):
        made = Rig(loop, ops_rig)
        made.url = url
        yield made


def held_package(rig: Rig) -> tuple[str, str, str]:
    """A package of two listed collectors' debits, both held by the screening: the id of
    the package and of each debit. Their payers differ, so that neither decision waits
    for the other's payer's account in the books."""
    gw, now = rig.gw, rig.gw.clock.now()

    def second_payer(tx: Any) -> None:
        gw.ledger.open_customer_account(tx, SECOND_PAYER, SECOND_PAYER_NAME, "personal",
                                        gw.work_date)
        gw.ledger.deposit(tx, "second-payer:opening", SECOND_PAYER, 10_000_00, gw.work_date)
        debits_in.add_mandate(tx, SECOND_PAYER, AGREEMENT, now)
    rig.db(second_payer)
    first = rig.debit(LISTED)
    second = replace(rig.debit(LISTED), debtor_name=SECOND_PAYER_NAME,
                     debtor_account=SECOND_PAYER)
    out, package_id, _ = rig.receive(first, second)
    assert (out["paid"], out["held"]) == (0, 2), out
    assert rig.package_state(package_id) == debits_in.WAITING_FOR_REVIEW
    return package_id, rig.payment_id(first.tx_id), rig.payment_id(second.tx_id)


def in_store_work(work: Any) -> Any:
    """`work(tx)` as the store runs it: what it keeps until its commit (stream entries,
    log lines, gathered rows, undos) collected, then dropped (no Redis is asked here;
    the gathered rows are written at once, as outside the store)."""
    def run(tx: Any) -> Any:
        local = store._local
        local.entries, local.lines, local.gathered, local.undo = [], [], None, []
        try:
            return work(tx)
        finally:
            local.entries = local.lines = local.undo = None
    return run


def passed_by_review(rig: Rig, payment_id: str) -> Any:
    """A supervisor's pass of the debit: paid in a receipt of its own. Nothing of it
    changes in the books, where a fail's release of a hold would wait for the other's."""
    return in_store_work(lambda tx: debit_review.approve(rig.gw, tx, payment_id, WHO,
                                                         rig.gw.clock.now()))


def refused_by_the_sweep(rig: Rig, payment_id: str) -> Any:
    """The deadline sweep's refusal of the debit, the only one due: the other's review is
    moved past the sweep's time first (committed, so that neither transaction of the
    race holds the other's row)."""
    due = rig.db(lambda tx: (
        tx.execute("UPDATE beps_debit_reviews SET due_at = '9999-12-31' "
                   "WHERE payment_id <> ?", (payment_id,)),
        tx.query_one("SELECT due_at FROM beps_debit_reviews WHERE payment_id = ?",
                     (payment_id,))[0])[1])
    return in_store_work(lambda tx: debit_review.expire(tx, rig.gw,
                                                        datetime.fromisoformat(due)))


FIRST = {"a supervisor's pass": passed_by_review, "the deadline sweep": refused_by_the_sweep}


@pytest.mark.parametrize("first_decision", list(FIRST))
def test_the_last_two_decisions_at_once_leave_the_package_answered(
        rig: Rig, first_decision: str) -> None:
    """The second decision (a supervisor's pass) waits for the first at the package's
    row, then finds no debit of it waiting: `answered`, not `partly_answered`."""
    package_id, first, second = held_package(rig)
    db = ledger.connect(rig.url)
    try:
        with db.transaction() as tx:
            FIRST[first_decision](rig, first)(tx)
            other = Other(rig.url, passed_by_review(rig, second))
            other.start_and_wait_for_lock(rig.url)
        outcome = other.finish()
    finally:
        db.close()

    assert not isinstance(outcome, Exception), outcome
    assert rig.package_state(package_id) == debits_in.ANSWERED
    assert rig.db(lambda tx: tx.query_one(
        "SELECT COUNT(*) FROM beps_debit_reviews WHERE package_id = ?", (package_id,)))[0] == 0
