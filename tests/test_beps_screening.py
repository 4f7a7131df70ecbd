"""Every outgoing customer payment passes the screening and the amount review at intake,
whatever its channel and door: a BEPS credit (a JSON transfer, a batch's item, a
periodic credit) the review hook holds is `held` with its reason and set aside, never
packed until a supervisor passes it; failed, or cancelled, its payer's hold is
released. Traditional characters and accounts in small letters are screened as the
listed spellings, on HVPS as on BEPS. A real gateway (embedded Redis, SQLite)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from gateway.beps import extension_of, items
from gateway.ops.testing import PAYEE_BANK, PAYER_BRANCH, PAYER_NAME, LoopThread, OpsRig
from tests.test_ops_control import Rig as ControlRig

_keys = itertools.count(1)

TRADITIONAL = "示例受限貿易有限公司"  # 貿 for the listed 贸


class Rig(ControlRig):
    """The console tests' rig, with BEPS shortcuts."""

    def body(self, **fields: Any) -> dict[str, Any]:
        """A normal transfer (no urgency: routed to BEPS) of 10.00 yuan."""
        body = {"payer_account": self.rig.payer_account, "payer_name": PAYER_NAME,
                "payer_bank": PAYER_BRANCH, "payee_account": "6222000011112222",
                "payee_name": "收款单位乙", "payee_bank": PAYEE_BANK, "amount": "10.00"}
        body.update(fields)
        return body

    def transfer(self, **fields: Any) -> dict[str, Any]:
        status, answer = self.run(self.gw.submit_transfer(
            "screening-tests", f"screening-{next(_keys)}", self.body(**fields)))
        assert status == 201, answer
        return answer

    def batch(self, *bodies: dict[str, Any]) -> list[Any]:
        return self.run(self.gw.submit_transfers(
            "screening-tests", [(f"screening-{next(_keys)}", b) for b in bodies]))

    def periodic(self, **fields: Any) -> dict[str, Any]:
        body = dict(self.body(**fields), agreement="AGR-SCREEN-01")
        status, answer = self.run(extension_of(self.gw).submit_periodic(
            "screening-tests", f"screening-{next(_keys)}", body))
        assert status == 201, answer
        return answer

    def item(self, payment_id: str) -> tuple[str, str | None, str | None]:
        """The payment's state and reason, and its item's package id."""
        return self.db(lambda tx: tx.query_one(
            "SELECT p.state, p.reason, i.package_id FROM payments p JOIN beps_items i ON "
            "i.payment_id = p.id WHERE p.id = ?", (payment_id,)))

    def seal(self) -> None:
        """Pack everything waiting now (the packer's own pass, forced)."""
        self.run(extension_of(self.gw).packer.seal(force=True))


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    loop = LoopThread()
    ops_rig = loop.run(OpsRig(tmp_path_factory.mktemp("beps-screening")).start())
    yield Rig(loop, ops_rig)
    loop.run(ops_rig.stop())
    loop.close()


@pytest.fixture
def threshold(rig: Rig) -> Any:
    """The amount review on, above 1,000.00 yuan, for one test."""
    was = rig.gw.settings.review_threshold_fen
    rig.gw.settings.review_threshold_fen = 1_000_00
    yield
    rig.gw.settings.review_threshold_fen = was


SCREENED = [
    # field, value, reason
    ("payee_name", "示例受限贸易有限公司", "screening_match_payee_name"),
    ("payee_name", TRADITIONAL, "screening_match_payee_name"),
    ("payee_name", "Blocked Demo Trading Co", "screening_match_payee_name"),
    ("payee_account", "BLOCKED-DEMO-0001", "screening_match_payee_account"),
    ("payee_account", "blocked-demo-0001", "screening_match_payee_account"),
]


@pytest.mark.parametrize("field, value, reason", SCREENED)
def test_a_screened_beps_transfer_is_held_and_set_aside(rig: Rig, field: str, value: str,
                                                        reason: str) -> None:
    answer = rig.transfer(**{field: value})

    assert (answer["channel"], answer["state"]) == ("beps", "held")
    assert rig.item(answer["id"]) == ("held", reason, items.HELD_OUT)


@pytest.mark.parametrize("field, value, reason", SCREENED)
def test_a_screened_batch_item_is_held_and_the_others_go_on(rig: Rig, field: str, value: str,
                                                           reason: str) -> None:
    clear, blocked = rig.batch(rig.body(), rig.body(**{field: value}))

    assert (clear[0], clear[1]["state"]) == (201, "accepted")
    assert (blocked[0], blocked[1]["state"], blocked[1]["channel"]) == (201, "held", "beps")
    assert rig.item(clear[1]["id"]) == ("accepted", None, None)
    assert rig.item(blocked[1]["id"]) == ("held", reason, items.HELD_OUT)


def test_a_batch_item_held_is_answered_held_again_under_its_key(rig: Rig) -> None:
    """The stored answer of a held batch item is the held view, not the accepted one."""
    body = rig.body(payee_name=TRADITIONAL)
    first = rig.run(rig.gw.submit_transfers("screening-tests", [("screening-again", body)]))
    again = rig.run(rig.gw.submit_transfers("screening-tests", [("screening-again", body)]))

    assert first[0][1]["state"] == again[0][1]["state"] == "held"
    assert first[0][1]["id"] == again[0][1]["id"]


def test_a_screened_periodic_credit_is_held_and_set_aside(rig: Rig) -> None:
    answer = rig.periodic(payee_name=TRADITIONAL)

    assert answer["state"] == "held"
    assert rig.item(answer["id"]) == ("held", "screening_match_payee_name", items.HELD_OUT)


def test_the_amount_review_holds_beps_transfers_batch_items_and_periodic_credits(
        rig: Rig, threshold: Any) -> None:
    small = rig.transfer(amount="1000.00")
    single = rig.transfer(amount="2000.00")
    (_, batched), = rig.batch(rig.body(amount="2000.00"))
    periodic = rig.periodic(amount="2000.00")

    assert rig.item(small["id"])[:2] == ("accepted", None)
    for answer in (single, batched, periodic):
        assert answer["channel"] == "beps"
        assert rig.item(answer["id"]) == ("held", "review_amount_above_threshold",
                                          items.HELD_OUT)


def test_a_held_item_is_packed_only_once_a_supervisor_passes_it(rig: Rig) -> None:
    held = rig.transfer(payee_name=TRADITIONAL)["id"]
    rig.seal()
    before_review = rig.item(held)
    done = rig.request("sup1", "review_approve", held)
    passed = rig.item(held)
    rig.seal()

    assert before_review == ("held", "screening_match_payee_name", items.HELD_OUT)
    assert done["state"] == "executed", done
    assert passed == ("accepted", None, None)
    assert rig.item(held)[2] not in (None, items.HELD_OUT, items.VOID)


def test_a_failed_review_cancels_the_item_and_releases_its_hold(rig: Rig) -> None:
    before = rig.balance()
    held = rig.transfer(payee_account="blocked-demo-0001")["id"]
    holding = rig.balance()
    done = rig.request("dir1", "review_reject", held)

    assert holding == before - 1000
    assert done["state"] == "executed", done
    assert rig.item(held) == ("cancelled", "review_rejected", items.VOID)
    assert rig.balance() == before


def test_an_operators_cancel_of_a_held_item_releases_its_hold(rig: Rig) -> None:
    before = rig.balance()
    held = rig.transfer(payee_name="Blocked Demo Trading Co")["id"]
    req = rig.request("op1", "cancel", held)
    rig.decide("sup1", req["id"], approve=True)

    assert rig.item(held) == ("cancelled", "cancelled_by_operator", items.VOID)
    assert rig.balance() == before


def test_an_operators_release_does_not_pass_the_review(rig: Rig) -> None:
    """Only the review's pass sends a screened item on: a release is for items an
    operator held, and is refused when asked for."""
    from gateway.errors import PaygateError

    held = rig.transfer(payee_name=TRADITIONAL)["id"]
    with pytest.raises(PaygateError) as exc:
        rig.request("op1", "release", held)

    assert exc.value.code == "payment_held_for_review"
    assert exc.value.problems[0].expected == "review_approve or review_reject"
    assert rig.item(held) == ("held", "screening_match_payee_name", items.HELD_OUT)


@pytest.mark.parametrize("field, value, reason", [
    ("payee_name", TRADITIONAL, "screening_match_payee_name"),
    ("payee_account", "blocked-demo-0001", "screening_match_payee_account"),
])
def test_hvps_screens_traditional_names_and_accounts_in_small_letters(
        rig: Rig, field: str, value: str, reason: str) -> None:
    answer = rig.transfer(urgency="urgent", **{field: value})

    assert answer["channel"] == "hvps"
    assert rig.state(answer["id"])[:3] == ("held", reason, "review")


def test_the_core_systems_cancel_of_a_held_item_releases_its_hold(rig: Rig) -> None:
    """POST /v1/transfers/{id}/cancel finds the item set aside: cancelled at once."""
    from gateway.exceptions import Exceptions

    before = rig.balance()
    held = rig.transfer(payee_name=TRADITIONAL)["id"]
    [ext] = [e for e in rig.gw.extensions if isinstance(e, Exceptions)]
    done = rig.run(ext.request_cancel(held, None, "core:screening-tests"))

    assert (done["state"], done["cancelled"]) == ("cancelled", "before_packing")
    assert rig.item(held) == ("cancelled", "cancelled_at_request", items.VOID)
    assert rig.balance() == before


def test_the_console_lists_a_held_item_for_review_and_offers_pass_and_fail(rig: Rig) -> None:
    held = rig.transfer(payee_name=TRADITIONAL)["id"]
    clear = rig.transfer()["id"]
    listed = rig.held_for_review()
    offered = rig.offered((held, clear), ("review_approve", "review_reject"))

    assert held in listed and clear not in listed
    assert offered == {(held, "review_approve"): True, (held, "review_reject"): True,
                       (clear, "review_approve"): False, (clear, "review_reject"): False}
