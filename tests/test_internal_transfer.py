"""Two of our branches that share a clearing account: a book transfer in our own ledger,
settled at once and never sent to CNAPS."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import PaygateError
from tests.e2e_support import YUAN, balance, open_account, started

pytestmark = pytest.mark.e2e


def test_internal_transfer_posts_in_our_books_only(tmp_path):
    """999100000027 → 999100000027 (one clearing account): payer debited, payee credited,
    state settled, no message on the wire; an unknown payee account is refused."""
    async def scenario():
        async with started(tmp_path) as h:
            gw = h.gateway
            payer = await open_account(h, 1, 10_000 * YUAN)
            payee = await open_account(h, 2, 0, name="系统内收款人")
            wire_before = await gw.store.run(lambda tx: tx.query_one(
                "SELECT COUNT(*) FROM archive WHERE mesg_type LIKE 'hvps.%' OR mesg_type "
                "LIKE 'beps.%'", ())[0])
            body = {"payer_account": payer, "payer_name": "示例客户", "payer_bank": "999100000027",
                    "payee_account": payee, "payee_name": "系统内收款人",
                    "payee_bank": "999100000027", "amount": "1234.56"}
            status, answer = await gw.submit_transfer("core", "int-1", body)
            with pytest.raises(PaygateError) as unknown:
                await gw.submit_transfer("core", "int-2", dict(body,
                                                               payee_account="6299000000000009"))
            wire_after = await gw.store.run(lambda tx: tx.query_one(
                "SELECT COUNT(*) FROM archive WHERE mesg_type LIKE 'hvps.%' OR mesg_type "
                "LIKE 'beps.%'", ())[0])
            return (status, answer, unknown.value, await balance(h, payer),
                    await balance(h, payee), wire_before, wire_after)

    status, answer, unknown, payer_fen, payee_fen, before, after = asyncio.run(scenario())
    assert status == 201 and answer["channel"] == "internal" and answer["state"] == "settled"
    assert answer["route"]["rule"] == "internal"
    assert payer_fen == 10_000 * YUAN - 123_456 and payee_fen == 123_456
    assert before == after
    assert unknown.problems[0].path == "/payee_account"
