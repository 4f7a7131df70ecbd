"""A payment's `reason` says why it is in its state: a reason an earlier state had
(waiting for the HVPS window, say) is not shown once the payment has moved on."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

import ledger
from gateway import payments
from gateway import store as gateway_store
from gateway.clock import SHANGHAI
from gateway.ops import views
from gateway.payments import REASON_STATES, public_view

NOW = datetime(2026, 12, 8, 8, 30, tzinfo=SHANGHAI)

ROW = {
    "id": "P2026120700000001", "direction": "out", "channel": "hvps", "amount_fen": 150_000,
    "currency": "CNY", "payer_account": "1", "payer_name": "甲", "payer_bank": "999100000027",
    "payee_account": "2", "payee_name": "乙", "payee_bank": "888200000023",
    "business_type": "A100", "business_kind": "02102", "urgency": "urgent",
    "msg_type": "hvps.111.001.01", "msg_id": "m", "end_to_end_id": "e", "pending_no": None,
    "route": {}, "work_date": "2026-12-07", "created_at": "t", "updated_at": "t",
    "reason": "waiting_for_hvps_window",
}


@pytest.mark.parametrize("state", ["held", "accepted", "sent", "queued", "settled",
                                   "rejected", "netted", "credited"])
def test_reason_is_shown_only_where_it_explains_the_state(state: str) -> None:
    view = public_view(dict(ROW, state=state))

    shown = state in ("held", "queued", "rejected")
    assert (view["reason"] == "waiting_for_hvps_window") is shown
    assert (state in REASON_STATES) is shown


@pytest.mark.parametrize("state", ["held", "accepted", "sent", "queued", "settled",
                                   "rejected", "netted", "credited"])
def test_console_shows_the_reason_the_core_system_sees(state: str) -> None:
    """The operators' page and command line read the console's view: the same reason as
    the core system's, in every state."""
    row = dict(ROW, state=state, channel="hvps", priority=1)

    assert views.payment_view(row)["reason"] == public_view(row)["reason"]


def _stored(tx: Any, payment_id: str) -> tuple[str, str | None]:
    return tx.query_one("SELECT state, reason FROM payments WHERE id = ?", (payment_id,))


def test_a_state_left_takes_its_reason_along_unless_the_new_one_gives_its_own() -> None:
    """Held for the window, sent at the opening, queued at the NPC: once sent the window's
    reason is gone, and queued the payment carries the NPC's. A lot moved to a state one
    of its payments is in already leaves that one's reason as it was."""
    db = ledger.connect("sqlite:///:memory:")
    with db.transaction() as tx:
        for statement in gateway_store.SCHEMA:
            tx.execute(statement, ())
        first = dict(ROW, id="P1", msg_id="m1", tx_id="t1", sender_direct="999100000019",
                     receiver_direct="888200000015", priority=1, state="accepted",
                     reason=None)
        payments.insert(tx, first)
        p = payments.transition(tx, first, "held", "held", NOW,
                                reason="waiting_for_hvps_window")
        held = _stored(tx, "P1")
        p = payments.transition(tx, p, "sent", "hvps_sent", NOW)
        sent, in_memory = _stored(tx, "P1"), p["reason"]
        p = payments.transition(tx, p, "queued", "hvps_queued_at_npc", NOW,
                                reason="queued for settlement")
        queued = _stored(tx, "P1")
        # Sent with the window's reason still stored (as rows written before this rule).
        payments.insert(tx, dict(first, id="P2", msg_id="m2", tx_id="t2", state="sent",
                                 reason="waiting_for_hvps_window"))
        lot = payments.transition_many(tx, [p, payments.get(tx, "P2")], "queued", "waited",
                                       NOW)
        after = [_stored(tx, "P1"), _stored(tx, "P2")]
    db.close()

    assert held == ("held", "waiting_for_hvps_window")
    assert sent == ("sent", None) and in_memory is None
    assert queued == ("queued", "queued for settlement")
    assert after == [("queued", "queued for settlement"), ("queued", None)]
    assert [row["reason"] for row in lot] == ["queued for settlement", None]
