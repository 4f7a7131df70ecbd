"""The last HVPS reconciliation (hvps.710/711, and 712/713 when it differed) is shown to
the operators beside BEPS's: GET /ops/api/status, the page's snapshot and `paygate ops
status` give its work date, whether it agreed, our totals by kind, and each difference."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.ops import cli_render
from tests.e2e_support import (YUAN, open_account, peer_payment_lost, started, transfer,
                               until, wait_state)
from tests.test_link_refusing import ops_status

pytestmark = pytest.mark.e2e


def test_ops_status_shows_the_last_hvps_reconciliation_and_its_differences(tmp_path):
    """Before any, status says none; a clean one agrees with our totals by kind; one
    missing a peer's payment the link dropped differs in the received totals and names
    that payment as only at the NPC."""
    async def scenario() -> dict[str, Any]:
        async with started(tmp_path) as h:
            gw = h.gateway
            seen: dict[str, Any] = {"none": await ops_status(gw.url)}
            payer = await open_account(h, 7, 1_000_000 * YUAN)
            payee = await open_account(h, 9, 0, name="收款客户")
            _, answer = await gw.submit_transfer("core", "r", transfer(payer, "80000.00"))
            await wait_state(h, answer["id"], "settled")
            await gw.reconcile_hvps(gw.work_date)
            seen["clean"] = await ops_status(gw.url)

            seen["sent"] = await peer_payment_lost(h, payee, 4_321_00)
            await gw.reconcile_hvps(gw.work_date)
            day = gw.work_date.isoformat()
            await until(lambda: day in gw.recon_details, "hvps.713 compared")
            seen["differs"] = await ops_status(gw.url)
            return seen

    seen = asyncio.run(scenario())
    clean = seen["clean"]["hvps_reconciliation"]
    differs = seen["differs"]["hvps_reconciliation"]
    lost = seen["sent"]["created"][0]
    shown = cli_render.status(seen["differs"])

    assert seen["none"]["hvps_reconciliation"] is None
    assert "not yet" in cli_render.status(seen["none"])
    assert clean["work_date"] == "2026-12-07" and clean["reconciled"] is True
    assert clean["differences"] == [] and clean["items"] is None
    [sent] = [t for t in clean["totals"] if t["sent_count"]]
    assert (sent["sent_count"], sent["sent_fen"], sent["sent"]) == (1, 80_000_00, "80,000.00")
    assert "agreed with the NPC" in cli_render.status(seen["clean"])
    assert differs["reconciled"] is False
    assert {d["field"] for d in differs["differences"]} == {"received_count", "received_fen"}
    [fen] = [d for d in differs["differences"] if d["field"] == "received_fen"]
    assert (fen["ours_yuan"], fen["npc_yuan"]) == ("0.00", "4,321.00")
    [item] = differs["items"]["differences"]
    assert item["only_at"] == "npc" and item["msg_id"] in lost.values()
    assert "DIFFERS from the NPC in 2 totals" in shown and item["msg_id"] in shown
    assert "ours 0.00, NPC 4,321.00" in shown
