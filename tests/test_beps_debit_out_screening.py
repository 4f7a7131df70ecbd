"""Our debits (beps.127, POST /v1/debits) are screened before any package carries them:
no money leaves the bank, but a listed payer (the debtor at another bank) or a listed
creditor (our customer) is a sanctioned counterparty. A match sets the debit aside,
`held` with the screening's reason, until a supervisor passes it (packed as any other)
or fails it (`cancelled`, never sent). A real gateway (embedded Redis, SQLite)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from gateway import payments
from gateway.beps import extension_of, items, packer
from gateway.ops import views
from gateway.ops.testing import PAYER_BRANCH, PAYER_NAME, serving
from ledger.testing import customer_account
from tests.test_ops_debit_give_up import PEER_BRANCH
from tests.test_ops_debit_give_up import Rig as GiveUpRig

_numbers = itertools.count(1)

LISTED = "示例受限贸易有限公司"  # gateway/ops/screening.toml


class Rig(GiveUpRig):
    """The debit tests' rig, with a customer of ours whose name is listed."""

    listed_account = customer_account(9, "corporate")

    def open_listed(self) -> None:
        self.run(lambda tx: self.gw.ledger.open_customer_account(
            tx, self.listed_account, LISTED, "corporate", self.gw.work_date))

    def collect(self, debtor_name: str = "对手客户", listed_creditor: bool = False
                ) -> dict[str, Any]:
        """POST /v1/debits for our customer (the listed one, or the rig's payer) from
        `debtor_name` at the peer bank: the answer."""
        n = next(_numbers)
        creditor = ((self.listed_account, LISTED) if listed_creditor
                    else (self.rig.payer_account, PAYER_NAME))
        status, view = self.loop.run(extension_of(self.gw).submit_debit(
            "ops-tests", f"screened-{n}", {
                "creditor_account": creditor[0], "creditor_name": creditor[1],
                "creditor_bank": PAYER_BRANCH, "debtor_account": f"62221111{n:08d}",
                "debtor_name": debtor_name, "debtor_bank": PEER_BRANCH, "amount": "12.34",
                "agreement": f"XY-S-{n}"}))
        assert status == 201, view
        return view

    def packed(self, pid: str) -> str | None:
        """Seal what is due now: the package id the debit's item has then."""
        def seal(tx: Any) -> str | None:
            ext = extension_of(self.gw)
            packer.seal_due(tx, self.gw, ext.settings, "stream", self.now(), force=True)
            return tx.query_one("SELECT package_id FROM beps_items WHERE payment_id = ?",
                                (pid,))[0]
        return self.run(seal)

    def review(self, action: str, pid: str) -> None:
        """A supervisor passes or fails the debit (the reviewer is the second person)."""
        status, done = self.call("POST", "/ops/api/requests", "sup1",
                                 {"action": action, "target": pid, "params": {}, "note": ""})
        assert status == 201 and done["state"] == "executed", done


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with serving(tmp_path_factory.mktemp("debit-out-screening")) as (loop, ops_rig):
        made = Rig(loop, ops_rig)
        made.open_listed()
        yield made


SCREENED = [
    # the debtor's name, whether the creditor is the listed customer, the reason
    ("对手客户", False, None),
    (LISTED, False, "screening_match_payer_name"),
    ("對手客戶", True, "screening_match_payee_name"),
]


@pytest.mark.parametrize("debtor_name, listed_creditor, reason", SCREENED)
def test_a_debit_with_a_listed_party_is_set_aside_before_packing(
        rig: Rig, debtor_name: str, listed_creditor: bool, reason: str | None) -> None:
    """The payer is screened as a payee of a credit would be, our customer as a payer."""
    answer = rig.collect(debtor_name, listed_creditor)
    shown = (answer["state"], answer["reason"], answer["held_for_review"])
    package = rig.packed(answer["id"])

    if reason is None:
        assert shown == ("accepted", None, False)
        assert package not in (None, items.HELD_OUT)
    else:
        assert shown == ("held", reason, True)
        assert package == items.HELD_OUT
        assert answer["id"] in [p["id"] for p in rig.run(views.held_for_review)]


def test_a_passed_debit_is_packed_as_any_other(rig: Rig) -> None:
    pid = rig.collect(LISTED)["id"]
    rig.review("review_approve", pid)
    debit = rig.payment(pid)
    package = rig.packed(pid)

    assert (debit["state"], debit["reason"]) == ("accepted", None)
    assert package not in (None, items.HELD_OUT)


def test_a_failed_debit_is_cancelled_and_never_sent(rig: Rig) -> None:
    pid = rig.collect(LISTED)["id"]
    rig.review("review_reject", pid)
    debit = rig.payment(pid)
    last = rig.run(lambda tx: payments.history(tx, pid))[-1]

    assert (debit["state"], debit["reason"]) == ("cancelled", "review_rejected")
    assert (last["state"], last["event"]) == ("cancelled", "cancelled_before_packing")
    assert rig.packed(pid) == items.VOID
