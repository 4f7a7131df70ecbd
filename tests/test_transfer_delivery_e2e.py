"""What `sent` tells, and what `delivery` adds (README, "States"), end to end against the
simulated NPC in its own process: while the NPC answers every POST 503 an HVPS payment
shows `sent` (handed to the link), and its `delivery` says the NPC has not taken it,
with each attempt so far provably not taken; the webhook says so once, the state kept
(`hvps_not_taken_by_npc`); once the NPC takes it, `delivery` says so. A payment
without a message of its own to the NPC shows none."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.e2e_support import (
    BRANCH,
    open_account,
    payer_after_one_settled,
    started,
    transfer,
    until,
    wait_state,
    webhook_receiver,
)

pytestmark = pytest.mark.e2e


def test_sent_while_the_npc_refuses_every_attempt_shows_it_untaken(tmp_path):
    async def scenario() -> dict[str, Any]:
        async with webhook_receiver() as (url, got), started(tmp_path, webhook_url=url) as h:
            gw = h.gateway
            payer = await payer_after_one_settled(h)
            await h.sim("POST", "/sim/faults", {"error_status": 503})
            _, answer = await gw.submit_transfer("core", "refused-503", transfer(payer, "3.00"))

            async def tried_twice() -> bool:
                view = await gw.get_transfer(answer["id"])
                return (view["delivery"] or {}).get("attempts_not_taken", 0) >= 2
            await until(tried_twice, "two attempts refused with 503")
            seen = {"refused": await gw.get_transfer(answer["id"])}
            await h.sim("POST", "/sim/faults", {"error_status": None})
            await wait_state(h, answer["id"], "settled", timeout_s=60)
            seen["settled"] = await gw.get_transfer(answer["id"])
            payee = await open_account(h, 2, 0)
            _, internal = await gw.submit_transfer("core", "book", transfer(
                payer, "1.00", payee_account=payee, payee_bank=BRANCH, payee_name="示例客户"))
            seen["internal"] = await gw.get_transfer(internal["id"])

            def told() -> list[tuple[str, str, str]]:
                return [(e["state"], e["previous"], e["event"]) for body, _ in got
                        for e in json.loads(body)["events"] if e["id"] == answer["id"]]
            await until(lambda: told()[-1:] == [("settled", "sent", "hvps_settled")],
                        "the settlement told")
            seen["told"] = told()
            return seen

    seen = asyncio.run(scenario())

    refused = seen["refused"]
    assert refused["state"] == "sent"
    delivery = refused["delivery"]
    assert delivery["taken_by_npc"] is False
    assert delivery["attempts"] >= 2
    # Each attempt ended 503 ("not taken now"), save one that may be under way now.
    assert delivery["attempts"] - delivery["attempts_not_taken"] in (0, 1)
    settled = seen["settled"]["delivery"]
    assert settled["taken_by_npc"] is True
    assert settled["attempts"] == settled["attempts_not_taken"] + 1
    assert seen["internal"]["delivery"] is None
    # Each once (two pushed at once may arrive in either order: `previous` places them).
    assert sorted(seen["told"]) == sorted([("sent", "accepted", "hvps_sent"),
                                           ("sent", "sent", "hvps_not_taken_by_npc"),
                                           ("settled", "sent", "hvps_settled")])
