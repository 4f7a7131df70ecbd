"""HVPS closes while payments wait on their lanes, end to end against the simulated NPC
in its own process (docs/operations.md, "When HVPS closes"). The NPC answers 503 for a
while, so two payments taken then stay on their lanes, every attempt provably not taken;
the NPC then announces the business cut-off (10 to 20). The gateway sends neither into
the closed window once the link is back: the one asking to queue waits for the next
opening with its money held, the one asking to be refused is rejected `hvps_closed`
with its money released and the core system told, as when each had arrived after the
close."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway import status_hold
from tests.e2e_support import (
    payer_after_one_settled,
    phase,
    started,
    transfer,
    until,
)

pytestmark = pytest.mark.e2e

WATCHED_FOR_S = 2.0  # how long the payments are watched not leaving once the link is back


def test_payments_left_on_the_lanes_follow_their_when_closed_at_the_npcs_cut_off(tmp_path):
    async def scenario() -> dict[str, Any]:
        async with started(tmp_path) as h:
            gw = h.gateway
            payer = await payer_after_one_settled(h)
            await h.sim("POST", "/sim/faults", {"error_status": 503})
            _, queued = await gw.submit_transfer("core", "lane-q", transfer(payer, "5.00"))
            _, refused = await gw.submit_transfer("core", "lane-r", transfer(
                payer, "6.00", when_closed="refuse"))
            ids = (queued["id"], refused["id"])

            async def outbox() -> list[tuple[Any, ...]]:
                return [tuple(row) for row in await gw.store.run(lambda tx: tx.query(
                    "SELECT state, attempts = untaken FROM outbox WHERE payment_id IN "
                    "(?, ?) ORDER BY id", ids))]

            async def tried() -> bool:
                return [row[1] for row in await outbox()] == [True, True] and \
                    await gw.store.run(lambda tx: tx.query_one(
                        "SELECT MIN(attempts) FROM outbox WHERE payment_id IN (?, ?)",
                        ids)[0]) >= 1
            await until(tried, "an attempt at each refused with 503")
            seen: dict[str, Any] = {"before": [(await gw.get_transfer(i))["state"]
                                               for i in ids]}
            await phase(h, "20")
            await until(lambda: gw.hvps_status == "20", "the cut-off taken")
            await h.sim("POST", "/sim/faults", {"error_status": None})
            await asyncio.sleep(WATCHED_FOR_S)
            seen["after"] = [await gw.get_transfer(i) for i in ids]
            seen["outbox"] = await outbox()
            seen["holds"] = await gw.store.run(lambda tx: tx.query(
                "SELECT e.state FROM payments p LEFT JOIN ledger_hold_end e ON "
                "e.hold_id = CAST(p.hold_id AS BIGINT) WHERE p.id IN (?, ?) ORDER BY p.id",
                ids))
            return seen

    seen = asyncio.run(scenario())

    assert seen["before"] == ["sent", "sent"]  # tried, given back, still on their lanes
    queued, refused = seen["after"]
    assert (queued["state"], queued["reason"]) == ("held", "waiting_for_hvps_window")
    assert (refused["state"], refused["reason"]) == ("rejected", "hvps_closed")
    assert refused["history"][-1]["event"] == status_hold.CLOSED_ON_LANE
    assert seen["outbox"] == [("waiting", True), ("failed", True)]
    # The waiting payment's money stays held; the refused one's is released.
    assert [state for (state,) in seen["holds"]] == [None, "released"]
