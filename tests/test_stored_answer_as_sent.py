"""The answer stored under the key of a JSON transfer sent from the work that accepts it
names the payment instead of holding its view (gateway.payments.answer_as_created), and
a retry under that key is answered exactly as the first request was, however far the
payment has gone since."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from gateway import payments
from tests.e2e_support import YUAN, open_account, started, transfer, wait_state

pytestmark = pytest.mark.e2e


def test_a_transfer_sent_at_once_is_stored_by_name_and_answered_as_first(tmp_path):
    """Stored as {as_created, state, urgency}; the retry after settlement still gets the
    first answer, state accepted, every field the same."""
    async def scenario():
        async with started(tmp_path) as h:
            gw = h.gateway
            payer = await open_account(h, 5, 1_000_000 * YUAN)
            status, first = await gw.submit_transfer("core", "k-sent",
                                                     transfer(payer, "1234.56"))
            await wait_state(h, first["id"], "settled")
            again = await gw.submit_transfer("core", "k-sent", transfer(payer, "1234.56"))
            stored = await gw.store.run(lambda tx: tx.query_one(
                "SELECT response FROM idempotency WHERE key = 'k-sent'"))
            return status, first, again, stored[0]

    status, first, again, stored = asyncio.run(scenario())

    assert status == 201 and first["state"] == "accepted"
    assert orjson.loads(stored) == {payments.AS_CREATED: first["id"], "state": "accepted",
                                    "urgency": "urgent"}
    assert again == (201, first)
