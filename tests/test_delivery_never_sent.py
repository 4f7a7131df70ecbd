"""`delivery.taken_by_npc` rests on evidence: an outbox row ended (`done`) without any
attempt that may have given the NPC the message is not taken, whether the payment was
cancelled before it was sent or found no longer sendable when its row was claimed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway import outbound
from gateway.exceptions.extension import Exceptions
from gateway.ops import cli_render
from tests.test_hvps_close_lanes import opened


def test_a_payment_cancelled_before_sending_is_not_shown_taken_by_the_npc(tmp_path):
    async def scenario() -> dict[str, Any]:
        rig = await opened(tmp_path)
        try:
            paid = await rig.submit("cancel-me")
            ext = next(e for e in rig.gw.extensions if isinstance(e, Exceptions))
            await ext.request_cancel(paid["id"], "changed my mind", "ops")
            return await rig.gw.get_transfer(paid["id"])
        finally:
            await rig.stop()
    view = asyncio.run(scenario())

    assert view["state"] == "cancelled"
    assert view["delivery"] == {"taken_by_npc": False, "attempts": 0,
                                "attempts_not_taken": 0}
    # `paygate ops payment`'s delivery line
    assert cli_render.delivery(view["delivery"]) == "never taken by the NPC; no link attempt"


def test_a_row_claimed_after_its_payment_ended_counts_no_attempt(tmp_path):
    """The payment ended by other means while its row waited on the lane: the claim ends
    the row without sending, and that claim is no delivery attempt."""
    async def scenario() -> tuple[Any, dict[str, Any]]:
        rig = await opened(tmp_path)
        try:
            gw = rig.gw
            paid = await rig.submit("ended-meanwhile")

            def claim_after_end(tx: Any) -> Any:
                tx.execute("UPDATE payments SET state = 'rejected' WHERE id = ?",
                           (paid["id"],))
                (outbox_id,) = tx.query_one("SELECT id FROM outbox WHERE payment_id = ? "
                                            "AND kind = 'hvps_credit'", (paid["id"],))
                return outbound.claim(tx, outbox_id, gw.keyring, gw.clock.now(),
                                      gw.notifier)
            sent = await gw.store.run(claim_after_end)
            return sent, await gw.get_transfer(paid["id"])
        finally:
            await rig.stop()
    sent, view = asyncio.run(scenario())

    assert sent is None
    assert view["delivery"] == {"taken_by_npc": False, "attempts": 0,
                                "attempts_not_taken": 0}


@pytest.mark.parametrize("state, attempts, untaken, taken", [
    ("pending", 0, 0, False),
    ("sending", 1, 0, False),
    ("sent", 1, 0, True),
    ("acked", 2, 1, True),
    ("done", 1, 0, True),     # ended by its result
    ("done", 0, 0, False),    # ended before it was ever sent
    ("done", 2, 2, False),    # ended after every attempt was refused (503, no connection)
    ("done", 3, 2, True),     # one attempt may have reached the NPC
])
def test_taken_on_evidence(state, attempts, untaken, taken):
    assert outbound.Delivery(1, state, attempts, untaken).taken is taken
