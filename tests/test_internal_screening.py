"""A book transfer between two of our branches (payer and payee accounts both in our
ledger) passes the screening and the amount review at intake as every outgoing customer
payment does: held, the payer's funds stay held and nothing is credited until a
supervisor passes it (then it settles as intake would have) or fails it, or a cancel
ends it (the hold released); the books balance at every step. A real gateway
(embedded Redis, SQLite)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from gateway.errors import PaygateError
from gateway.ops.testing import PAYER_BRANCH, PAYER_NAME, LoopThread, OpsRig
from ledger.testing import customer_account
from tests.test_ops_control import Rig as ControlRig

_keys = itertools.count(1)

LISTED = "示例受限贸易有限公司"  # a listed name (gateway/ops/screening.toml), our customer
CLEAR = "系统内收款单位丙"


class Rig(ControlRig):
    """The console tests' rig, with two payee accounts of our own ledger."""

    listed_account = customer_account(7, "corporate")
    clear_account = customer_account(8, "corporate")

    def open_payees(self) -> None:
        def work(tx: Any) -> None:
            for account, name in ((self.listed_account, LISTED), (self.clear_account, CLEAR)):
                self.gw.ledger.open_customer_account(tx, account, name, "corporate",
                                                     self.gw.work_date)
        self.db(work)

    def body(self, listed: bool = True, amount: str = "10.00") -> dict[str, Any]:
        account, name = ((self.listed_account, LISTED) if listed
                         else (self.clear_account, CLEAR))
        return {"payer_account": self.rig.payer_account, "payer_name": PAYER_NAME,
                "payer_bank": PAYER_BRANCH, "payee_account": account, "payee_name": name,
                "payee_bank": PAYER_BRANCH, "amount": amount}

    def transfer(self, listed: bool = True, amount: str = "10.00") -> dict[str, Any]:
        status, answer = self.run(self.gw.submit_transfer(
            "internal-screening-tests", f"internal-{next(_keys)}", self.body(listed, amount)))
        assert status == 201, answer
        assert answer["channel"] == "internal", answer
        return answer

    def state_of(self, payment_id: str) -> tuple[str, str | None]:
        return self.db(lambda tx: tx.query_one(
            "SELECT state, reason FROM payments WHERE id = ?", (payment_id,)))

    def books(self) -> tuple[int, int, bool]:
        """The payer's and the listed payee's balances, and whether the books balance."""
        def work(tx: Any) -> tuple[int, int, bool]:
            ledger = self.gw.ledger
            return (ledger.balance(tx, self.rig.payer_account),
                    ledger.balance(tx, self.listed_account),
                    ledger.trial_balance(tx).balanced)
        return self.db(work)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    loop = LoopThread()
    ops_rig = loop.run(OpsRig(tmp_path_factory.mktemp("internal-screening")).start())
    made = Rig(loop, ops_rig)
    made.open_payees()
    yield made
    loop.run(ops_rig.stop())
    loop.close()


def test_a_clear_book_transfer_settles_at_once(rig: Rig) -> None:
    answer = rig.transfer(listed=False)

    assert answer["state"] == "settled"
    assert rig.state_of(answer["id"]) == ("settled", None)


def test_a_screened_book_transfer_is_held_its_funds_held_nothing_credited(rig: Rig) -> None:
    payer, payee, _ = rig.books()
    answer = rig.transfer()

    assert answer["state"] == "held"
    assert rig.state_of(answer["id"]) == ("held", "screening_match_payee_name")
    assert rig.books() == (payer - 1000, payee, True)


def test_a_screened_book_transfer_in_a_batch_is_held_and_the_others_settle(rig: Rig) -> None:
    listed, clear = rig.run(rig.gw.submit_transfers("internal-screening-tests", [
        (f"internal-{next(_keys)}", rig.body(listed=True)),
        (f"internal-{next(_keys)}", rig.body(listed=False))]))

    assert (listed[0], listed[1]["channel"], listed[1]["state"]) == (201, "internal", "held")
    assert rig.state_of(listed[1]["id"]) == ("held", "screening_match_payee_name")
    assert rig.state_of(clear[1]["id"]) == ("settled", None)


def test_the_amount_review_holds_a_book_transfer(rig: Rig) -> None:
    was = rig.gw.settings.review_threshold_fen
    rig.gw.settings.review_threshold_fen = 1_000_00
    try:
        small = rig.transfer(listed=False, amount="1000.00")
        large = rig.transfer(listed=False, amount="2000.00")
    finally:
        rig.gw.settings.review_threshold_fen = was

    assert rig.state_of(small["id"]) == ("settled", None)
    assert rig.state_of(large["id"]) == ("held", "review_amount_above_threshold")


def test_a_passed_book_transfer_settles_as_intake_would_have(rig: Rig) -> None:
    payer, payee, _ = rig.books()
    held = rig.transfer()["id"]
    done = rig.request("sup1", "review_approve", held)

    assert done["state"] == "executed", done
    assert rig.state_of(held) == ("settled", None)
    assert rig.books() == (payer - 1000, payee + 1000, True)
    events = [e["event"] for e in rig.run(rig.gw.get_transfer(held))["history"]]
    assert events[-2:] == ["review_approved", "internal_transfer_settled"]


def test_a_failed_book_transfer_is_cancelled_and_its_hold_released(rig: Rig) -> None:
    before = rig.books()
    held = rig.transfer()["id"]
    done = rig.request("dir1", "review_reject", held)

    assert done["state"] == "executed", done
    assert rig.state_of(held) == ("cancelled", "review_rejected")
    assert rig.books() == before


def test_an_operators_cancel_of_a_held_book_transfer_releases_its_hold(rig: Rig) -> None:
    before = rig.books()
    held = rig.transfer()["id"]
    req = rig.request("op1", "cancel", held)
    rig.decide("sup1", req["id"], approve=True)

    assert rig.state_of(held) == ("cancelled", "cancelled_by_operator")
    assert rig.books() == before


def test_the_core_systems_cancel_of_a_held_book_transfer_releases_its_hold(rig: Rig) -> None:
    from gateway.exceptions import Exceptions

    before = rig.books()
    held = rig.transfer()["id"]
    [ext] = [e for e in rig.gw.extensions if isinstance(e, Exceptions)]
    done = rig.run(ext.request_cancel(held, None, "core:internal-screening-tests"))

    assert (done["state"], done["cancelled"]) == ("cancelled", "before_settling")
    assert rig.state_of(held) == ("cancelled", "cancelled_at_request")
    assert rig.books() == before


def test_a_settled_book_transfer_is_not_cancelled(rig: Rig) -> None:
    from gateway.exceptions import Exceptions

    settled = rig.transfer(listed=False)["id"]
    [ext] = [e for e in rig.gw.extensions if isinstance(e, Exceptions)]
    with pytest.raises(PaygateError) as exc:
        rig.run(ext.request_cancel(settled, None, "core:internal-screening-tests"))

    assert exc.value.code == "payment_not_cancellable"
    assert rig.state_of(settled) == ("settled", None)


def test_an_operators_release_does_not_pass_the_review(rig: Rig) -> None:
    held = rig.transfer()["id"]
    with pytest.raises(PaygateError) as exc:
        rig.request("op1", "release", held)

    assert exc.value.code == "payment_held_for_review"
    assert rig.state_of(held) == ("held", "screening_match_payee_name")


def test_the_console_lists_a_held_book_transfer_and_offers_pass_and_fail(rig: Rig) -> None:
    held = rig.transfer()["id"]
    settled = rig.transfer(listed=False)["id"]
    listed = rig.held_for_review()
    offered = rig.offered((held, settled), ("review_approve", "review_reject", "cancel"))

    assert held in listed and settled not in listed
    assert offered == {(held, "review_approve"): True, (held, "review_reject"): True,
                       (held, "cancel"): True, (settled, "review_approve"): False,
                       (settled, "review_reject"): False, (settled, "cancel"): False}


def test_an_operators_hold_of_a_book_transfer_is_refused_with_what_it_is(rig: Rig) -> None:
    """Nothing of a book transfer waits to be sent: one held for review is held already
    (pass, fail or cancel it); a settled or cancelled one is final."""
    held = rig.transfer()["id"]
    settled = rig.transfer(listed=False)["id"]
    cancelled = rig.transfer()["id"]
    rig.request("dir1", "review_reject", cancelled)
    refused = []
    for pid in (held, settled, cancelled):
        with pytest.raises(PaygateError) as exc:
            rig.request("op1", "hold", pid)
        refused.append(exc.value.problems[0])
    offered = rig.offered((held, settled), ("hold",))

    assert [(p.code, p.value) for p in refused] == [
        ("payment_already_held", "screening_match_payee_name"),
        ("book_transfer_not_holdable", "settled"),
        ("book_transfer_not_holdable", "cancelled")]
    assert f"paygate ops request review-approve {held}" in str(refused[0].message)
    assert offered == {(held, "hold"): False, (settled, "hold"): False}
    assert [rig.state_of(pid) for pid in (held, settled, cancelled)] == [
        ("held", "screening_match_payee_name"), ("settled", None),
        ("cancelled", "review_rejected")]
