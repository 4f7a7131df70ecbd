"""Queries (查询查复) about BEPS payments end to end: a BEPS payment is one transaction of
a package, so a ccms.314 names the package that carried it (OrgnlGrpHdr: the package's
MsgId, sender and type) and the transaction (OrgnlTx/OrgnlTxId), both ways: ours about
a credit we sent, and a peer's about a credit it sent us."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.messages import codec
from gateway.queries import desk_of
from tests.e2e_support import BANK, BRANCH, PEER, YUAN, open_account, until
from tests.test_beps_e2e import MONDAY, MONDAY_MORNING, beps_started, credit, run, wait_state
from tests.test_queries_e2e import query_field, query_state, wait_answered

pytestmark = pytest.mark.e2e

QUESTION = "收款人称款项未入账，请查复"


async def sent_queries(h: Any) -> list[Any]:
    """Our ccms.314s on the wire, decoded."""
    gw = h.gateway
    rows = await gw.store.run(lambda tx: tx.query(
        "SELECT envelope FROM archive WHERE direction = 'out' AND mesg_type = ? ORDER BY id",
        ("ccms.314.001.01",)))
    return [codec.decode(bytes(raw), gw.keyring).obj for (raw,) in rows]


def test_our_query_about_a_beps_credit_names_its_package_and_transaction(tmp_path):
    """The ccms.314 names the beps.121 that carried the payment and the payment's TxId;
    the peer finds it in the NPC's records and says it settled."""
    async def scenario() -> None:
        async with beps_started(tmp_path, MONDAY_MORNING, "10", MONDAY) as h:
            gw = h.gateway
            payer = await open_account(h, 31, 10_000 * YUAN)
            _, ours = await gw.submit_transfer("core", "bq-1", credit(payer, "800.00"))
            view = await wait_state(h, ours["id"], "settled")
            package_msg_id = view["beps"]["package"][len(BANK):]
            tx_id = ours["id"][1:]
            _, query = await desk_of(gw).open_query(
                "core", "bq-q1", {"payment_id": ours["id"], "content": QUESTION})
            await wait_answered(h, query["id"])
            answered = await query_state(h, query["id"])
            wire = (await sent_queries(h))[-1]

            assert package_msg_id != tx_id == ours["message"]["msg_id"]
            assert query["original"] == {"msg_id": package_msg_id, "sending_bank": BANK,
                                         "message_type": "beps.121.001.01", "tx_id": tx_id}
            assert query["system"] == "BEPS"
            assert (wire.subject.msg_id, wire.subject.instg_party, wire.subject.mt) == (
                package_msg_id, BANK, "beps.121.001.01")
            assert wire.subject_tx.tx_id == tx_id
            assert answered["reply"]["content"] == \
                f"该笔款项已于{MONDAY.isoformat()}清算，已入收款人账户。"
    run(scenario())


def test_a_peers_query_naming_its_package_and_transaction_finds_the_credit(tmp_path):
    """A peer names its beps.121 by MsgId and the credit by TxId, as a bank does: the
    credit is found and the query answered from our records. Naming the TxId as the
    message's MsgId names no message that was on the wire: nothing is found."""
    async def scenario() -> None:
        async with beps_started(tmp_path, MONDAY_MORNING, "10", MONDAY) as h:
            gw = h.gateway
            payee = await open_account(h, 32, 0, name="收款客户")
            sent = await h.sim("POST", "/sim/beps/peer/send", {
                "sender": PEER, "receiver": BANK, "account": payee, "name": "收款客户",
                "bank": BRANCH, "amount_fen": 300 * YUAN, "count": 1})
            await h.sim("POST", "/sim/beps/net", {})

            async def credited() -> list[tuple[str, str]]:
                return await gw.store.run(lambda tx: tx.query(
                    "SELECT id, tx_id FROM payments WHERE channel = 'beps' AND "
                    "direction = 'in' AND state = 'credited'", ()))
            await until(credited, "the peer's BEPS credit credited")
            (payment_id, tx_id), = await credited()
            asked = {}
            for name, msg_id in (("package", sent["msg_id"]), ("tx_id", tx_id)):
                answer = await h.sim("POST", "/sim/peer/query", {
                    "sender": PEER, "orig_msg_id": msg_id, "orig_tx_id": tx_id,
                    "orig_mt": "beps.121.001.01", "amount_fen": 300 * YUAN,
                    "content": "请查询该笔款项是否已入账"})
                asked[name] = f"QI{PEER}{answer['msg_id']}"

            async def both_in() -> bool:
                return None not in [await query_field(h, q, "handling")
                                    for q in asked.values()]
            await until(both_in, "both queries recorded")
            found = await query_state(h, asked["package"])
            missed = await query_state(h, asked["tx_id"])

            assert sent["msg_id"] != tx_id
            assert (found["handling"], found["payment_id"]) == ("auto", payment_id)
            assert found["system"] == "BEPS"
            assert found["reply"]["content"].startswith("该笔款项人民币300.00元已于")
            assert (missed["handling"], missed["payment_id"]) == ("payment_not_found", None)
    run(scenario())

