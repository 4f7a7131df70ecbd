"""Under concurrent traffic both ways, envelopes share link POSTs in both directions,
and every payment, message and outbox row still ends as it did with one envelope per
POST: nothing lost, nothing sent, settled or credited twice."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e_support import (BANK, BRANCH, PEER, open_account, started, transfer, until,
                               wait_state)

pytestmark = pytest.mark.e2e

OUTGOING, INCOMING = 60, 30


def test_concurrent_payments_share_posts_and_all_end_right(tmp_path):
    """60 HVPS payments submitted at once and 30 credits in from a peer: fewer POSTs
    than envelopes cross the link each way; all 60 settle, all 30 are taken and
    processed once; the NPC took no message twice and settled none twice; no outbox
    message row is left unsent."""
    async def scenario():
        async with started(tmp_path) as h:
            gw = h.gateway
            payer = await open_account(h, 1, 100_000_000 * 100)
            payee = await open_account(h, 2, 0)
            answers = await asyncio.gather(*(
                gw.submit_transfer("core", f"k{i}", transfer(payer, f"{60000 + i}.00"))
                for i in range(OUTGOING)))
            await h.sim("POST", "/sim/peer/send", {
                "sender": PEER, "receiver": BANK, "payee_account": payee,
                "payee_name": "示例客户", "payee_bank": BRANCH, "amount_fen": 1_00,
                "count": INCOMING})
            for _, answer in answers:
                await wait_state(h, answer["id"], "settled")

            async def all_in() -> bool:
                return await gw.store.run(lambda tx: tx.query_one(
                    "SELECT COUNT(*) FROM inbox WHERE mesg_type = 'hvps.111.001.01' "
                    "AND state = 'processed'", ())[0]) == INCOMING
            await until(all_in, "incoming credits processed")

            async def outbox_quiet() -> bool:
                return await gw.store.run(lambda tx: tx.query_one(
                    "SELECT COUNT(*) FROM outbox WHERE kind IN ('message', 'hvps_credit') "
                    "AND state IN ('pending', 'sending', 'failed')", ())[0]) == 0
            await until(outbox_quiet, "no message row left unsent")
            stats = await h.sim("GET", "/sim/stats")
            return gw.link_poster, stats

    poster, stats = asyncio.run(scenario())

    assert poster.posts < poster.envelopes
    assert stats["link"]["posts"] < stats["link"]["envelopes"]
    assert stats["settled_twice"] == [] and stats["duplicates"] == 0
    assert stats["settled"] == OUTGOING + INCOMING
