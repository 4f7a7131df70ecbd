"""End to end: our BEPS debit paid into suspense (its creditor's account closed before
the payer bank paid) goes back to the payer bank as a beps.121 A105 naming the debit in
RtrInf, through the simulated NPC and the peer bank; once the NPC nets it the debit is
`returned`, the item leaves suspense and the books agree with the NPC's."""

from __future__ import annotations

from typing import Any

import pytest
from lxml import etree

from gateway.beps import extension_of
from gateway.exceptions import debit_suspense
from gateway.messages import envelope as env_mod
from tests.e2e_support import BANK, BRANCH, PEER, PEER_BRANCH, open_account
from tests.test_beps_e2e import (
    CLEARING_FEN,
    MONDAY,
    MONDAY_MORNING,
    assert_wire_valid,
    beps_started,
    books,
    events,
    npc_balance,
    run,
    wait_state,
)

pytestmark = pytest.mark.e2e

REASON = "客户账户已销户，退回付款行"


def test_a_paid_debit_in_suspense_is_returned_to_the_payer_bank(tmp_path):
    async def scenario() -> None:
        async with beps_started(tmp_path, MONDAY_MORNING, "10", MONDAY) as h:
            gw = h.gateway
            creditor = await open_account(h, 8, 0, name="示例水务公司")
            _, view = await extension_of(gw).submit_debit("core", "debit-closed", {
                "creditor_account": creditor, "creditor_name": "示例水务公司",
                "creditor_bank": BRANCH, "debtor_account": "6222000000004321",
                "debtor_name": "对手客户", "debtor_bank": PEER_BRANCH,
                "amount": "88.00", "agreement": "XY-CLOSED"})
            pid = view["id"]
            await gw.store.run(lambda tx: gw.ledger.close_account(tx, creditor, MONDAY))

            paid = await wait_state(h, pid, "settled")
            pending_no = paid["pending_write_off_no"]
            debit_tx_id = await gw.store.run(lambda tx: tx.query_one(
                "SELECT tx_id FROM payments WHERE id = ?", (pid,))[0])
            parked = await books(h)

            assert pending_no and "beps_debit_paid" in events(paid)
            assert parked["balanced"]

            def ask(tx: Any) -> dict[str, Any]:
                return debit_suspense.return_tx(gw, tx, pid, {}, "operator:sup1", REASON, 1,
                                                gw.clock.now())[0]
            rid = (await gw.store.run(ask))["return_id"]
            returned = await wait_state(h, pid, "returned")
            ret = await wait_state(h, rid, "settled")
            end = await books(h, creditor)
            item = await gw.store.run(lambda tx: gw.ledger.suspense_item(tx, pending_no))
            stats = (await h.sim("GET", "/sim/stats"))["peers"][PEER]
            sent = await gw.store.run(lambda tx: tx.query_one(
                "SELECT envelope FROM archive WHERE mesg_type = 'beps.121.001.01' "
                "AND direction = 'out' ORDER BY id DESC LIMIT 1", ()))

            assert "returned_to_payer_bank" in events(returned)
            assert rid in returned["reason"]
            assert ret["message"]["type"] == "beps.121.001.01"
            assert item.state == "returned" and end[creditor] == 0
            assert end["netted_out"] == 0 and end["netted_in"] == 0 and end["balanced"]
            assert end["clearing"] == CLEARING_FEN and end["clearing"] == await npc_balance(h)
            assert stats.get("beps.121.001.01", 0) >= 1
            body = etree.fromstring(env_mod.decode(bytes(sent[0])).body)
            ns = {"b": body.nsmap[None]}
            assert body.findtext(".//b:RtrInf/b:OrgnlGrpHdr/b:OrgnlMT", namespaces=ns) == \
                "beps.127.001.01"
            assert body.findtext(".//b:RtrInf/b:OrgnlGrpHdr/b:OrgnlInstgPty",
                                 namespaces=ns) == BANK
            assert body.findtext(".//b:RtrInf/b:OrgnlTx/b:OrgnlTxId", namespaces=ns) == \
                debit_tx_id
            assert body.findtext(".//b:RtrInf/b:Cntt", namespaces=ns) == REASON
            await assert_wire_valid(h, 4)
    run(scenario())
