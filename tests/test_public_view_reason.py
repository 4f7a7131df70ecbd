"""A payment's `reason` says why it is in its state: a reason an earlier state had
(waiting for the HVPS window, say) is not shown once the payment has moved on."""

from __future__ import annotations

import pytest

from gateway.payments import REASON_STATES, public_view

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
