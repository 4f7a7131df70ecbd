"""The actions a row of the console's lists offers (control.add_row_actions) are those
its payment's detail view offers a director, for payments of every channel and
direction in the states the lists show, and they are found for the whole list in a few
statements, however long it is: its payments, their HVPS messages' outbox rows, their
BEPS items and packages, and the requests pending on them read once each. A
precondition that passes for a payment its action's scope (actions.ROW_SCOPES) rules
out is a bug the request's own check asserts. A real gateway (embedded Redis, SQLite)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from gateway import payments as stored
from gateway import screening
from gateway.beps import extension_of
from gateway.ops import actions, control, views
from gateway.ops.testing import PAYEE_BANK, PAYER_BRANCH, PAYER_NAME, LoopThread, OpsRig
from ledger.testing import customer_account
from tests.test_ops_control import Rig as ControlRig

_keys = itertools.count(1)

LISTED = "示例受限贸易有限公司"  # a listed name (gateway/ops/screening.toml): screened
BOOK_PAYEE = customer_account(9, "corporate")  # an account of our own: a book transfer


class Rig(ControlRig):
    def transfer(self, payee_name: str = "收款单位乙", payee_account: str = "6222000011112222",
                 **fields: Any) -> str:
        body = {"payer_account": self.rig.payer_account, "payer_name": PAYER_NAME,
                "payer_bank": PAYER_BRANCH, "payee_account": payee_account,
                "payee_name": payee_name, "payee_bank": PAYEE_BANK, "amount": "10.00",
                **fields}
        status, answer = self.run(self.gw.submit_transfer("row-tests", f"row-{next(_keys)}",
                                                          body))
        assert status == 201, answer
        return answer["id"]

    def director_actions(self, payment_id: str) -> list[str]:
        """The detail view's actions for a director, those a row may show: an
        application or a return only for a credit the screening parked (any other is
        applied or returned from its detail view)."""
        director, now = self.op("dir1"), self.gw.clock.now()

        def work(tx: Any) -> list[str]:
            payment = stored.get(tx, payment_id)
            return [name for name in control.offered(self.gw, tx, director, payment_id, now)
                    if name in control.ROW_ACTIONS
                    and (name not in actions.PARKED_ROW_ACTIONS or screening.is_parked(payment))]
        return self.db(work)

    def row_actions(self) -> tuple[dict[str, list[str]], int]:
        """Each listed payment's row actions, and the statements that found them."""
        now = self.gw.clock.now()

        def work(tx: Any) -> tuple[dict[str, list[str]], int]:
            rows = views.search_payments(tx, {"limit": views.LIST_MAX})
            counting = _Counting(tx)
            control.add_row_actions(self.gw, counting, rows, now)
            return {row["id"]: row["actions"] for row in rows}, counting.statements
        return self.db(work)


class _Counting:
    """A transaction that counts the statements run through it."""

    def __init__(self, tx: Any) -> None:
        self._tx, self.statements = tx, 0

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._tx, name)
        if name not in ("query", "query_one", "execute", "executemany"):
            return value

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.statements += 1
            return value(*args, **kwargs)
        return counted


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    loop = LoopThread()
    ops_rig = loop.run(OpsRig(tmp_path_factory.mktemp("row-actions")).start())
    made = Rig(loop, ops_rig)
    made.db(lambda tx: made.gw.ledger.open_customer_account(
        tx, BOOK_PAYEE, LISTED, "corporate", made.gw.work_date))
    yield made
    loop.run(ops_rig.stop())
    loop.close()


@pytest.fixture(scope="module")
def payments(rig: Rig) -> dict[str, str]:
    """One payment of each kind the console's lists show, by what it is."""
    packed = rig.transfer()
    rig.run(extension_of(rig.gw).packer.seal(force=True))
    made = {
        "beps item packed": packed,
        "hvps waiting for the window": rig.transfer(urgency="urgent"),
        "hvps held by an operator": rig.transfer(urgency="urgent"),
        "hvps held by the screening": rig.transfer(LISTED, urgency="urgent"),
        "hvps with a cancel pending": rig.transfer(urgency="urgent"),
        "beps item waiting to be packed": rig.transfer(),
        "beps item held by an operator": rig.transfer(),
        "beps item held by the screening": rig.transfer(LISTED),
        "book transfer held by the screening": rig.transfer(
            LISTED, BOOK_PAYEE, payee_bank=PAYER_BRANCH),
        "incoming credit in suspense": rig.run(rig.rig.receive(next(_keys), 100_00)),
        "incoming credit credited": rig.run(rig.rig.receive(
            next(_keys), 100_00, rig.rig.payer_account, PAYER_NAME)),
        "incoming credit the screening parked": rig.run(rig.rig.receive(
            next(_keys), 100_00, rig.rig.payer_account, PAYER_NAME, payer_name=LISTED)),
        "incoming credit the screening parked, a return asked": rig.run(rig.rig.receive(
            next(_keys), 100_00, rig.rig.payer_account, PAYER_NAME, payer_name=LISTED)),
    }
    rig.request("op1", "hold", made["hvps held by an operator"])
    rig.request("op1", "hold", made["beps item held by an operator"])
    rig.request("op1", "cancel", made["hvps with a cancel pending"])
    rig.request("op1", "return", made["incoming credit the screening parked, a return asked"])
    return made


def test_a_row_offers_what_the_detail_view_offers_a_director(
        rig: Rig, payments: dict[str, str]) -> None:
    """For every kind of payment, the row's actions are the detail view's (as a director,
    who may ask for every one of them), found by one source: a request's own checks."""
    rows, _ = rig.row_actions()

    seen = {kind: rows[pid] for kind, pid in payments.items()}
    expected = {kind: rig.director_actions(pid) for kind, pid in payments.items()}

    assert seen == expected
    assert seen["hvps held by the screening"] == ["cancel", "priority", "review_approve",
                                                  "review_reject"]
    assert seen["incoming credit in suspense"] == []
    # Parked by the screening: applied to its payee or returned, never a review's pass
    # or fail; a return waiting for its second person leaves nothing else to ask.
    assert seen["incoming credit the screening parked"] == ["return", "suspense_apply"]
    assert seen["incoming credit the screening parked, a return asked"] == []


def test_a_list_of_rows_is_checked_in_seven_statements(
        rig: Rig, payments: dict[str, str]) -> None:
    """Its payments, their HVPS outbox rows, their BEPS items and those items' packages,
    the suspense items and returns of the credits the screening parked, and the requests
    pending on them, each read once for the whole list: not a read per action and row."""
    rows, statements = rig.row_actions()

    assert len(rows) >= len(payments)
    assert statements == 7


def test_a_list_without_parked_credits_reads_nothing_more_for_them(
        rig: Rig, payments: dict[str, str]) -> None:
    """The two reads of parked credits are made only for a list holding some: the
    others' rows are checked in five statements, as before."""
    parked = {pid for kind, pid in payments.items() if "parked" in kind}
    now = rig.gw.clock.now()

    def work(tx: Any) -> int:
        rows = [row for row in views.search_payments(tx, {"limit": views.LIST_MAX})
                if row["id"] not in parked]
        counting = _Counting(tx)
        control.add_row_actions(rig.gw, counting, rows, now)
        return counting.statements

    assert rig.db(work) == 5


def test_a_precondition_passing_outside_its_scope_is_a_bug_the_request_check_asserts(
        rig: Rig, payments: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """With cancel's scope left without outgoing HVPS payments, a cancel of one that its
    precondition takes trips the assertion, naming the table to widen."""
    monkeypatch.setitem(actions.ROW_SCOPES, "cancel", frozenset({("out", "beps")}))
    pid = payments["hvps waiting for the window"]

    with pytest.raises(AssertionError, match="ROW_SCOPES"):
        rig.db(lambda tx: actions.check_target(rig.gw, tx, "cancel", pid, {}))
