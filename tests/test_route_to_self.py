"""A payee bank of ours whose direct participant is the payer's, but which does not share
the payer branch's clearing account, cannot be reached through CNAPS (the NPC refuses a
message whose sending and receiving participant are one): the router refuses it at once
instead of sending it for the NPC to reject."""

from __future__ import annotations

from datetime import date

import pytest

from gateway.errors import PaygateError
from routing.defaults import load_default
from routing.router import RouteRequest

OUR_BRANCH, OUR_CLEARING_CENTRE, PEER_BRANCH = "999100000027", "999100000019", "888200000023"


@pytest.mark.parametrize("urgency", ["normal", "urgent"])
def test_a_payee_bank_behind_our_own_participant_is_refused(urgency):
    router = load_default()
    with pytest.raises(PaygateError) as refused:
        router.decide(RouteRequest(payer_bank=OUR_BRANCH, payee_bank=OUR_CLEARING_CENTRE,
                                   amount_fen=1000, business_type="A100",
                                   business_kind="02102", urgency=urgency),
                      on_date=date(2026, 12, 7))
    problem = refused.value.problems[0]
    assert (refused.value.status, problem.code, problem.path, problem.value) == (
        422, "payer_and_payee_clearing_banks_must_differ", "payee_bank", OUR_CLEARING_CENTRE)


def test_a_peer_bank_is_still_routed():
    decision = load_default().decide(RouteRequest(
        payer_bank=OUR_BRANCH, payee_bank=PEER_BRANCH, amount_fen=1000,
        business_type="A100", business_kind="02102", urgency="normal"),
        on_date=date(2026, 12, 7))
    assert decision.sender_direct != decision.receiver_direct


def test_from_our_clearing_centre_to_a_branch_of_its_own_is_refused_too():
    """The clearing centre and a branch with another clearing account: once routed by
    BEPS with sender and receiver both 999100000019, which the NPC refuses."""
    with pytest.raises(PaygateError) as refused:
        load_default().decide(RouteRequest(
            payer_bank=OUR_CLEARING_CENTRE, payee_bank=OUR_BRANCH, amount_fen=100,
            business_type="A100", business_kind="02102", urgency="normal"),
            on_date=date(2026, 12, 7))
    assert refused.value.problems[0].code == "payer_and_payee_clearing_banks_must_differ"
