"""Every message about a payment shows in its operators' view (GET
/ops/api/payments/{id}): the incoming ones as well as those we sent."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.ops import views
from tests.e2e_support import (BANK, BRANCH, PEER, YUAN, open_account, started, transfer,
                               until, wait_state)

pytestmark = pytest.mark.e2e


async def _messages(h: Any, payment_id: str) -> list[tuple[str, str]]:
    """What GET /ops/api/payments/{id} shows as its messages."""
    channel = (await h.gateway.get_transfer(payment_id))["channel"]
    messages = await h.gateway.store.run(lambda tx: views.payment_messages(tx, payment_id,
                                                                            channel))
    return [(m["direction"], m["mesg_type"]) for m in messages]


async def _incoming(h: Any, channel: str) -> list[str]:
    rows = await h.gateway.store.run(lambda tx: tx.query(
        "SELECT id FROM payments WHERE direction = 'in' AND channel = ? AND state IN "
        "('credited', 'suspense', 'settled') ORDER BY id", (channel,)))
    return [r[0] for r in rows]


def test_incoming_and_outgoing_payments_show_their_messages(tmp_path):
    async def scenario() -> tuple[list, list, list]:
        async with started(tmp_path) as h:
            payer = await open_account(h, 7, 1_000_000 * YUAN)
            payee = await open_account(h, 8, 0, name="收款客户")
            status, answer = await h.gateway.submit_transfer(
                "core", "links-1", transfer(payer, "60000.00", urgency="urgent"))
            assert status == 201, answer
            await wait_state(h, answer["id"], "settled")
            await h.sim("POST", "/sim/peer/send", {
                "sender": PEER, "receiver": BANK, "payee_account": payee,
                "payee_name": "收款客户", "payee_bank": BRANCH, "amount_fen": 12_345_67,
                "count": 1, "business_type": "A100", "business_kind": "02102",
                "priority": "NORM"})
            await until(lambda: _incoming(h, "hvps"), "the incoming HVPS credit")
            await h.sim("POST", "/sim/beps/peer/send", {
                "sender": PEER, "receiver": BANK, "account": payee, "name": "收款客户",
                "bank": BRANCH, "amount_fen": 300 * YUAN, "count": 1})

            async def netted() -> list[str]:
                await h.sim("POST", "/sim/beps/net", {})
                await asyncio.sleep(0.2)
                return await _incoming(h, "beps")
            await until(netted, "the incoming BEPS credit")
            [hvps_in], [beps_in] = await _incoming(h, "hvps"), await _incoming(h, "beps")
            return (await _messages(h, answer["id"]), await _messages(h, hvps_in),
                    await _messages(h, beps_in))
    out, hvps_in, beps_in = asyncio.run(scenario())

    assert ("out", "hvps.111.001.01") in out and ("in", "ccms.900.001.02") in out
    assert hvps_in == [("in", "hvps.111.001.01")]
    assert beps_in == [("in", "beps.121.001.01")]
