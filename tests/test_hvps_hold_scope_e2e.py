"""What a hold of HVPS sending covers (docs/operations.md, "An HVPS status notice the
gateway refused"), end to end against the simulated NPC in its own process. A return
(our A105 hvps.111 sending back an incoming payment) is a payment: asked for while the
hold lasts it stays on its lane, `accepted` with the reason `hvps_sending_held`, and
the NPC never sees it until the two are in step again; then it goes and settles. A
query about a payment is no settlement: it goes to the NPC, and on to the bank it
asks, while the hold lasts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway import status_hold
from gateway.exceptions.extension import Exceptions
from gateway.queries import desk_of
from tests.e2e_support import (
    BANK,
    BRANCH,
    PEER,
    WORK_DATE,
    YUAN,
    open_account,
    started,
    transfer,
    until,
    wait_state,
)

pytestmark = pytest.mark.e2e

HELD_FOR_S = 2.0  # how long the return is watched not leaving


async def in_suspense(h: Any, amount_fen: int) -> str:
    """An incoming payment to an account we do not have, once parked in suspense."""
    await h.sim("POST", "/sim/peer/send", {
        "sender": PEER, "receiver": BANK, "payee_account": "6299000000000000001",
        "payee_name": "无此人", "payee_bank": BRANCH, "amount_fen": amount_fen,
        "business_type": "A100", "business_kind": "02102", "priority": "NORM"})

    def find(tx: Any) -> Any:
        return tx.query_one("SELECT id FROM payments WHERE direction = 'in' AND "
                            "state = 'suspense' AND amount_fen = ?", (amount_fen,))
    await until(lambda: h.gateway.store.run(find), "an incoming payment in suspense")
    return (await h.gateway.store.run(find))[0]


async def peer_got(h: Any, mesg_type: str) -> int:
    return (await h.sim("GET", "/sim/stats"))["peers"][PEER].get(mesg_type, 0)


def test_a_return_waits_out_the_hold_and_a_query_goes_meanwhile(tmp_path):
    async def scenario() -> dict[str, Any]:
        async with started(tmp_path) as h:
            gw = h.gateway
            payer = await open_account(h, 1, 1_000 * YUAN)
            _, paid = await gw.submit_transfer("core", "paid", transfer(payer, "1.00"))
            await wait_state(h, paid["id"], "settled")

            async def paid_delivered() -> bool:
                return await peer_got(h, "hvps.111.001.01") == 1
            await until(paid_delivered, "the settled payment delivered to the peer")
            original = await in_suspense(h, 500 * YUAN)
            await h.sim("POST", "/sim/phase", {"status": "00", "date": WORK_DATE.isoformat(),
                                                "force": True})
            await until(lambda: gw.hvps_hold is not None, "HVPS sending held")
            ext = next(e for e in gw.extensions if isinstance(e, Exceptions))
            asked = await ext.request_return(original, "收款人账号不存在", "test")
            returned = asked["return"]["id"]
            await desk_of(gw).open_query(
                "core", "q-hold", {"payment_id": paid["id"], "content": "请查询是否入账"})

            async def query_delivered() -> bool:
                return await peer_got(h, "ccms.314.001.01") == 1
            await until(query_delivered, "the query delivered to the bank it asks")
            await asyncio.sleep(HELD_FOR_S)
            seen: dict[str, Any] = {
                "during": await gw.get_transfer(returned),
                "outbox": await gw.store.run(lambda tx: tx.query_one(
                    "SELECT state, attempts FROM outbox WHERE payment_id = ?", (returned,))),
                "peer_credits": await peer_got(h, "hvps.111.001.01"),
                "npc_rejected": (await h.sim("GET", "/sim/stats"))["rejected"]}
            await h.sim("POST", "/sim/phase", {"status": "10", "date": WORK_DATE.isoformat()})
            await until(lambda: gw.hvps_hold is None, "the hold ended")
            await wait_state(h, returned, "settled")
            await wait_state(h, original, "returned")
            seen["after"] = await gw.get_transfer(returned)
            return seen

    seen = asyncio.run(scenario())

    during = seen["during"]
    assert (during["state"], during["reason"]) == ("accepted", status_hold.HELD_REASON)
    assert tuple(seen["outbox"]) == ("pending", 0)
    assert seen["peer_credits"] == 1 and seen["npc_rejected"] == 0  # the paid one alone
    assert seen["after"]["reason"] is None
    assert seen["after"]["delivery"]["taken_by_npc"] is True
