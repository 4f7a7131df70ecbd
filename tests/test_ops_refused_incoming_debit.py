"""A debit another bank sent us that our receipt refused (beps.127 answered RJ01, no
mandate) is a final incoming payment: the console lists and shows it offering no
action, and a request of an action of outgoing payments on it is refused by name."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import pytest

from gateway.beps import debits_in
from gateway.messages.package import ReturnLimit, Transfer
from gateway.ops import cli_render
from gateway.ops.testing import PAYER_BRANCH, PAYER_NAME, ConsoleRig, serving
from tests.beps_incoming_support import package
from tests.e2e_support import PEER_BRANCH

_numbers = itertools.count(1)


class Rig(ConsoleRig):
    def refused_debit(self) -> str:
        """A debit of the rig's payer under no mandate, refused in the receipt (RJ01)."""
        debit = Transfer(f"20261213{next(_numbers):08d}", PAYER_NAME, self.rig.payer_account,
                         None, PAYER_BRANCH, PEER_BRANCH, "示例燃气公司", "6222000000001234",
                         None, 100, "B100", "02102", agreement="NO-SUCH-AGREEMENT")
        d = package(f"20261213{next(_numbers):08d}", [debit])
        d.obj = replace(d.obj, return_limit=ReturnLimit("01"))

        def work(tx: Any) -> str:
            debits_in.on_debit_package(tx, self.gw, d, self.gw.clock.now())
            return tx.query_one("SELECT id FROM payments WHERE direction = 'in' AND "
                                "tx_id = ?", (debit.tx_id,))[0]
        return self.run(work)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with serving(tmp_path_factory.mktemp("refused-debit")) as (loop, ops_rig):
        yield Rig(loop, ops_rig)


def test_the_console_lists_and_shows_a_refused_debit_offering_nothing(rig: Rig) -> None:
    payment_id = rig.refused_debit()
    snapshot = rig.call("GET", "/ops/api/snapshot")
    listed = rig.call("GET", "/ops/api/payments")
    detail = rig.call("GET", f"/ops/api/payments/{payment_id}")

    assert snapshot[0] == 200, snapshot
    assert listed[0] == 200, listed
    (row,) = [p for p in listed[1]["payments"] if p["id"] == payment_id]
    assert (row["direction"], row["state"], row["actions"]) == ("in", "rejected", [])
    assert detail[0] == 200, detail
    assert (detail[1]["state"], detail[1]["actions"]) == ("rejected", [])
    assert "you may request: (none)" in cli_render.payment(detail[1])


@pytest.mark.parametrize(("action", "params", "code"), [
    ("hold", {}, "payment_direction_not_supported"),
    ("release", {}, "payment_direction_not_supported"),
    ("priority", {"priority": 1}, "payment_direction_not_supported"),
    ("cancel", {}, "cancel_only_for_outgoing_hvps_payments")])
def test_an_action_of_outgoing_payments_on_a_refused_debit_is_refused_by_name(
        rig: Rig, action: str, params: dict[str, Any], code: str) -> None:
    payment_id = rig.refused_debit()
    status, body = rig.call("POST", "/ops/api/requests", "op1", {
        "action": action, "target": payment_id, "params": params, "note": "try"})

    assert status == 409, body
    assert [(e["code"], e["path"]) for e in body["errors"]] == [(code, "/target")]



def test_a_cancel_of_a_debit_sent_to_us_says_what_answers_it_not_a_return(rig: Rig) -> None:
    """The code of a cancel of an incoming payment is older than its use and kept; its
    message says why it applies here: the payment is a debit another bank sent us,
    answered in our receipt, and not a credit to return to its sender."""
    payment_id = rig.refused_debit()
    status, body = rig.call("POST", "/ops/api/requests", "op1", {
        "action": "cancel", "target": payment_id, "params": {}, "note": "try"})
    (error,) = body["errors"]

    assert (status, error["code"]) == (409, "cancel_only_for_outgoing_hvps_payments")
    assert f"payment {payment_id} is incoming (rejected)" in error["message"]
    assert "debit another bank sent us" in error["message"] and "receipt" in error["message"]
    assert "return" not in error["message"]
    assert "every incoming payment" in error["expected"]
