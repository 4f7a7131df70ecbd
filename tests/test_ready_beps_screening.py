"""A ready hvps.111 of normal priority, routed to BEPS, passes the screening and the
amount review as a JSON transfer does: one naming a blocked payee (in traditional
characters) or above the review threshold is held and never packed, while a clear one
from the same core system goes out in its package."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.beps import extension_of, items
from tests.e2e_support import YUAN, started
from tests.test_ready_beps_addresses import package_of, small
from tests.test_ready_message_checks import open_payer, post

pytestmark = pytest.mark.e2e

PAYEE = "<Nm>对手乙建材有限公司</Nm>".encode()


def test_ready_messages_routed_to_beps_are_screened_and_reviewed(tmp_path):
    async def scenario() -> None:
        async with started(tmp_path, review_threshold_fen=1_000_00) as h:
            gw = h.gateway
            await open_payer(h, 1_000_000 * YUAN)
            extension_of(gw).configure(package_age_max_s=0.2)
            blocked = small("2026120790000021", False).replace(
                PAYEE, "<Nm>示例受限貿易有限公司</Nm>".encode())
            large = small("2026120790000022", False).replace(b">100.00<", b">2000.00<")
            answers = [await post(h, raw) for raw in
                       (blocked, large, small("2026120790000023", False))]
            assert [(s, a["channel"], a["state"]) for s, a in answers] == [
                (201, "beps", "held"), (201, "beps", "held"), (201, "beps", "accepted")], \
                answers
            await package_of(h, answers[2][1]["id"])  # the clear one is packed and sent

            def kept(tx: Any) -> list[tuple[str, str, str]]:
                return [tx.query_one("SELECT p.state, p.reason, i.package_id FROM payments p "
                                     "JOIN beps_items i ON i.payment_id = p.id WHERE p.id = ?",
                                     (a["id"],)) for _, a in answers[:2]]
            assert await gw.store.run(kept) == [
                ("held", "screening_match_payee_name", items.HELD_OUT),
                ("held", "review_amount_above_threshold", items.HELD_OUT)]
    asyncio.run(scenario())
